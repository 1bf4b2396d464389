"""genvis.cache"""
