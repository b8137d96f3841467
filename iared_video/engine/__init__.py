"""Engine: the generic trainer and tester (method hooks do the rest), meters, checkpoints, DDP, logging."""
