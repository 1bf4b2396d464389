"""genvis.model"""
