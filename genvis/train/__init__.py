"""genvis.train"""
