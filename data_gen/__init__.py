"""Everything that talks to a teacher or judge endpoint and writes a dataset."""
