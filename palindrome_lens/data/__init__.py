"""Strings, their labels, the generator of labelled splits, and the tokenizer."""
