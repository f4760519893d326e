"""N-gram decontamination of training data against benchmark sets: normalize, hash, scan, verify, report."""
