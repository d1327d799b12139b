"""``artifactfs import`` and ``artifactfs export``: W&B manifests in and out (sdk/wandb_io.py)."""

from __future__ import annotations

from pathlib import Path

import click

from artifactfs.cli.common import make_api, user_errors
from artifactfs.cli.output import fail, shown_ref
from artifactfs.core.digests import MD5

__all__ = ["export", "import_"]

@click.command(name="import")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("root", type=click.Path(file_okay=False))
@click.argument("target")
@click.option("--type", "type_", required=True, help="Artifact type, e.g. dataset or model.")
@click.option("--alias", "aliases", multiple=True, help="Alias to give the new version (repeat).")
@click.option("--digest-algorithm", type=click.Choice(["MD5", "XXH128"], case_sensitive=False),
              default=None,
              help="The W&B artifact's digest algorithm (default: XXH128 when an entry has "
                   "extra.alg XXH128, else MD5; W&B's manifest JSON does not record it).")
@click.option("--ignore-extra", is_flag=True,
              help="Leave out files under ROOT that the manifest does not list (refused "
                   "otherwise).")
@click.option("--description", "-d", default=None, help="Description of the new version.")
@user_errors
def import_(manifest: str, root: str, target: str, type_: str, aliases: tuple[str, ...],
            digest_algorithm: str | None, ignore_extra: bool, description: str | None) -> None:
    """Commit a W&B artifact as the next version of PROJECT/NAME.

    MANIFEST is W&B's manifest JSON (artifact.manifest.to_manifest_json() written to a
    file, or a W&B server's wandb_manifest.json), ROOT the folder its files were downloaded
    to (artifact.download()). Every file is checked against its entry (size and digest)
    before anything is uploaded; references stay references and need no file. Prints the
    new version and its digest, which is W&B's.

    \b
    Example:
      artifactfs import wandb_manifest.json artifacts/mnist:v3 vision/mnist --type dataset
    """
    from artifactfs.sdk.wandb_io import import_wandb

    if ":" in target:
        fail(f"import target {target!r} takes no alias; use --alias to label the new version")
    api = make_api()
    art = import_wandb(
        api, manifest, root, target, type=type_, aliases=aliases,
        digest_algorithm=digest_algorithm, description=description,
        extra_files="ignore" if ignore_extra else "refuse",
    )
    click.echo(shown_ref(art.entity, art.project, art.name, api.config.entity))
    click.echo(f"digest: {art.digest}", err=True)


@click.command()
@click.argument("ref")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the manifest JSON (default: beside ROOT, as "
                   "ROOT.wandb_manifest.json; never inside ROOT).")
@user_errors
def export(ref: str, root: str, manifest_path: str | None) -> None:
    """Write REF's files into ROOT and its manifest in W&B's JSON, for the wandb package.

    The files are verified as 'download' verifies them; references are not fetched and
    stay references in the manifest. W&B's ArtifactManifest.from_manifest_json loads the
    manifest with REF's digest, and W&B's verify() accepts ROOT. Prints how to load it.

    \b
    Example:
      artifactfs export vision/mnist:v3 out/mnist
      # out/mnist/ holds the files, out/mnist.wandb_manifest.json the manifest
    """
    from artifactfs.sdk.wandb_io import export_wandb

    api = make_api()
    art = api.artifact(ref)
    written = export_wandb(art, root, manifest_path)
    refs = sum(1 for e in art.manifest if e.ref is not None)
    files = len(art.manifest) - refs
    click.echo(f"exported {shown_ref(art.entity, art.project, art.name, api.config.entity)}: "
               f"{files} files to {root}"
               + (f", {refs} references kept as references" if refs else ""))
    click.echo(f"manifest: {written} (digest {art.digest})")
    click.echo(_load_hint(Path(written), art.manifest.digest_algorithm))


def _load_hint(path: Path, algorithm: str) -> str:
    """How to load the manifest in wandb. W&B's JSON does not say its artifact's digest
    algorithm: an XXH128 one must be passed it, or its digest() comes out MD5 and wrong
    (docs/wandb-format.md, §4)."""
    lines = [
        "load it in wandb:",
        "  import json",
        "  from wandb.sdk.artifacts.artifact_manifest import ArtifactManifest",
    ]
    if algorithm == MD5:
        lines.append(
            f"  manifest = ArtifactManifest.from_manifest_json(json.load(open({str(path)!r})))")
    else:
        lines += [
            "  from wandb.sdk.artifacts._generated import ArtifactDigestAlgorithm",
            "  manifest = ArtifactManifest.from_manifest_json(",
            f"      json.load(open({str(path)!r})),",
            f"      digest_algorithm=ArtifactDigestAlgorithm.MANIFEST_{algorithm})",
        ]
    lines.append(f"  manifest.digest()  # {algorithm} artifact digest, as above")
    return "\n".join(lines)
