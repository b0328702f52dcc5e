"""The classifier: a TransformerLens TransformerBridge (boot_native), bidirectional or causal, 2 logits read at
BOS or EOS."""
