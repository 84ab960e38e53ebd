"""CIE-Bench: benchmark sets of complex instructions with per-sub-instruction regions, the two
metrics (Instruction Compliance, Background Consistency), editors to run, and reports."""
