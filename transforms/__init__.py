"""Stage transforms: the synthetic source (:mod:`.synthetic`), the annotate stage
(:mod:`.annotate`) and the score stage's judges and filter (:mod:`.judge`)."""
