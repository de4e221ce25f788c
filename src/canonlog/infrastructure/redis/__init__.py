"""Redis adapters: the writer lease and the halt channel shared by every process."""
