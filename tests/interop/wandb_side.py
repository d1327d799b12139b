"""The wandb side of the interop tests: run by the wandb venv's python, never imported by pytest.

    python wandb_side.py build SPEC.json OUT      artifacts made by wandb.Artifact
    python wandb_side.py load  SPEC.json         manifests loaded by wandb's from_manifest_json
    python wandb_side.py surface SPEC.json       the public names of wandb's classes

``build``: SPEC is a list of ``{"name", "algorithm", "ops": [...]}``; each op is one call of
``wandb.Artifact``'s public API (``add_dir``, ``add_file``, ``new_file``, ``add_reference``).
For each artifact it writes ``OUT/NAME/manifest.json`` (``to_manifest_json()``) and
``OUT/NAME/root/``, the artifact's files at their entry paths (what ``artifact.download()``
would give: copies of wandb's own staged files), and prints one JSON object: name ->
``{"digest": manifest.digest(), "artifact_digest": artifact.digest}``.

``load``: SPEC is a list of ``{"name", "manifest", "algorithm", "root"}``; each manifest is
loaded with ``ArtifactManifest.from_manifest_json`` and the algorithm (the argument W&B's
SDK passes, docs/wandb-format.md §4) and, when ``root`` is set, the folder is checked by
wandb's own ``Artifact.verify``. Prints name -> ``{"digest", "entries", "verified"}``
(``verified`` is "ok" or wandb's error), ``entries`` as wandb writes them out again.

``surface``: SPEC is a list of class names (``Artifact``, ``ArtifactManifestEntry``);
prints class -> the sorted names of its public attributes and methods.

All run with WANDB_MODE=offline: nothing here needs a server.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import wandb
from wandb.sdk.artifacts._generated import ArtifactDigestAlgorithm
from wandb.sdk.artifacts.artifact_manifest import ArtifactManifest
from wandb.sdk.artifacts.artifact_state import ArtifactState

ALGORITHMS = {
    "MD5": ArtifactDigestAlgorithm.MANIFEST_MD5,
    "XXH128": ArtifactDigestAlgorithm.MANIFEST_XXH128,
}


def build(spec: list[dict[str, Any]], out: str) -> dict[str, Any]:
    result = {}
    for item in spec:
        art = wandb.Artifact(item["name"], "dataset", digest_algorithm=item["algorithm"])
        for op in item["ops"]:
            kind, args = op[0], op[1]
            if kind == "new_file":
                with art.new_file(args["name"], mode="w") as f:
                    f.write(args["text"])
            else:
                getattr(art, kind)(**args)
        folder = os.path.join(out, item["name"])
        root = os.path.join(folder, "root")
        os.makedirs(root)
        manifest = art.manifest
        for path, entry in manifest.entries.items():
            if entry.ref is None:
                dest = os.path.join(root, path)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(entry.local_path, dest)
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump(manifest.to_manifest_json(), f)
        result[item["name"]] = {"digest": manifest.digest(), "artifact_digest": art.digest}
    return result


def load(spec: list[dict[str, Any]]) -> dict[str, Any]:
    result = {}
    for item in spec:
        with open(item["manifest"]) as f:
            manifest = ArtifactManifest.from_manifest_json(
                json.load(f), digest_algorithm=ALGORITHMS[item["algorithm"]]
            )
        verified = None
        if item.get("root"):
            # wandb's own verify() on an artifact holding the loaded manifest. verify() and
            # get_entry() are for logged artifacts only (@ensure_logged), and logging needs a
            # server: the artifact is marked committed, as one fetched from a server is; the
            # check itself (every file under root an entry, every stored entry's digest in
            # its own algorithm, references skipped) is wandb's, untouched
            art = wandb.Artifact("exported", "dataset")
            art._manifest = manifest
            art._state = ArtifactState.COMMITTED
            try:
                art.verify(item["root"])
                verified = "ok"
            except ValueError as exc:
                verified = str(exc)
        result[item["name"]] = {
            "digest": manifest.digest(),
            "entries": manifest.to_manifest_json()["contents"],
            "verified": verified,
        }
    return result


def surface(classes: list[str]) -> dict[str, list[str]]:
    from wandb.sdk.artifacts.artifact_manifest_entry import ArtifactManifestEntry
    from wandb.sdk.artifacts.artifact_manifests.artifact_manifest_v1 import (
        ArtifactManifestV1,
    )

    # the manifest a loaded or logged artifact has is the V1 one; the manifest and entry
    # are pydantic models, whose fields dir() of the class does not show
    known = {"Artifact": wandb.Artifact, "ArtifactManifestEntry": ArtifactManifestEntry,
             "ArtifactManifest": ArtifactManifestV1}
    return {name: sorted({n for n in dir(known[name]) if not n.startswith("_")}
                         | set(getattr(known[name], "model_fields", {})))
            for name in classes}


def tags(candidates: list[str]) -> dict[str, object]:
    """Which of ``candidates`` wandb's own check takes as a tag, and what it makes of them
    all together (duplicates dropped, in order)."""
    from wandb.sdk.artifacts._validators import validate_tags

    def takes(tag: str) -> bool:
        try:
            validate_tags([tag])
        except ValueError:
            return False
        return True

    valid = [t for t in candidates if takes(t)]
    return {"valid": valid, "together": validate_tags(valid)}


def main() -> None:
    command, spec_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    if command == "build":
        out = build(spec, sys.argv[3])
    elif command == "load":
        out = load(spec)
    elif command == "surface":
        out = surface(spec)
    elif command == "tags":
        out = tags(spec)
    else:
        raise SystemExit(f"unknown command {command!r}")
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
