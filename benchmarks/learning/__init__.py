"""A CPU-scale InstantID experiment: does the training recipe learn identity? (README.md beside this file.)"""
