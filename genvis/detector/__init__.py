"""genvis.detector"""
