"""MCIE-E1, the editor trained on MCIE shards (issue 6). Not built yet."""
