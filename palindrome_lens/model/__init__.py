"""The classifier: a TransformerLens TransformerBridge (boot_native), bidirectional, 2 logits at BOS."""
