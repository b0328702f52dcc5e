"""Training and evaluation of the classifier: the fast TL-native module is trained, the
TransformerBridge over the same weights is saved and evaluated."""
