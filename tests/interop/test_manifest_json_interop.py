"""``artifact.manifest.to_manifest_json()`` of artifacts made by artifactfs, loaded by the
real wandb package (offline): wandb's ``ArtifactManifest.from_manifest_json`` gives the
same digest, and wandb's own ``to_manifest_json()`` of what it loaded is ours, key for key
and in the same order (entries and each entry's keys), a ``wandb-artifact://`` reference
included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_cli import embedded_only
from test_wandb_interop import ALGORITHMS, FILES, WandbRun

from artifactfs import Api, Artifact


@embedded_only
def test_to_manifest_json_loads_in_wandb_as_it_is(
        run_wandb: WandbRun, api: Api, tmp_path: Path) -> None:
    source = Artifact("source", "dataset", api=api)
    with source.new_file("t.txt", mode="w") as f:
        f.write("target\n")
    source.save(project="interop")
    loads: list[dict[str, Any]] = []
    ours: dict[str, dict[str, Any]] = {}
    digests = {}
    for algorithm in ALGORITHMS:
        art = Artifact(f"m-{algorithm.lower()}", "dataset", digest_algorithm=algorithm, api=api)
        for path in sorted(FILES, reverse=True):  # insertion order, not sorted order
            with art.new_file(path, mode="wb") as f:
                f.write(FILES[path])
        art.add_reference(source.get_entry("t.txt"), name="refs/t.txt")
        art.save(project="interop")
        saved = api.artifact(f"interop/{art.name}")
        out = saved.manifest.to_manifest_json()
        ours[algorithm] = out
        digests[algorithm] = saved.digest
        manifest = tmp_path / f"{algorithm}.json"
        manifest.write_text(json.dumps(out))
        loads.append({"name": algorithm, "algorithm": algorithm, "manifest": str(manifest)})
    loaded = run_wandb("load", loads)
    for algorithm in ALGORITHMS:
        assert loaded[algorithm]["digest"] == digests[algorithm]
        theirs, mine = loaded[algorithm]["entries"], ours[algorithm]["contents"]
        assert theirs == mine
        assert list(theirs) == list(mine)
        assert [list(e) for e in theirs.values()] == [list(e) for e in mine.values()]
        ref = mine["refs/t.txt"]
        assert list(ref) == ["digest", "ref", "size"]
        assert ref["ref"] == f"wandb-artifact://{source.id}/t.txt"
