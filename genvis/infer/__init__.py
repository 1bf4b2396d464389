"""genvis.infer"""
