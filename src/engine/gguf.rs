//! GGUF reader (metadata, tensor index, dequantisation). Being written.
