"""genvis.data"""
