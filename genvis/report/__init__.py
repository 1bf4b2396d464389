"""genvis.report"""
