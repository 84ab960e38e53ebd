"""Human validation in Label Studio: ``mcie ls serve | export | import | shard``.

Modules by role: :mod:`.server` (run a local server from ``.venv-ls``), :mod:`.client` (SDK
connection, errors → exit 3, token scrubbing), :mod:`.config` (labeling config),
:mod:`.tasks` (sample → task + prediction, brush RLE), :mod:`.export`, :mod:`.verdicts`
(annotations → reviews → one decision), :mod:`.importer`, :mod:`.final` (final shards),
:mod:`.review_index` (review state in the build's index), :mod:`.cli`.
"""
