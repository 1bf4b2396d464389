"""genvis.evaluate"""
