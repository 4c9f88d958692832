"""The hostile suite: tries to break nbci with hostile notebooks, inputs, signals and faults."""
