"""Keras models (TensorFlow): the builder of one architecture, the supernet, QAT and int8 export."""
