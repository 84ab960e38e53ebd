"""The embedded default: procedural scenes, a planner over their scene graph, an editor that
re-renders them (with injected failures), and the truth of what it did."""
