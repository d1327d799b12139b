"""Names, types, aliases and refs (artifactfs.core.names): every rule, and messages naming it."""

from __future__ import annotations

import pytest

from artifactfs.core.errors import ArtifactFSError, InvalidName
from artifactfs.core.names import (
    LATEST,
    MAX_NAME_LENGTH,
    Ref,
    parse_ref,
    parse_version_label,
    validate_alias,
    validate_name,
    validate_type,
    version_label,
)

# ---- names and types --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "0", "mnist", "imagenet-mini", "my_model.v2", "A-b_c.d-9", "-", "_", "a..b",
     "x" * MAX_NAME_LENGTH],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name) == name
    assert validate_type(name) == name


def test_max_name_length_is_128() -> None:
    assert MAX_NAME_LENGTH == 128
    validate_name("n" * 128)
    with pytest.raises(InvalidName, match="longer than 128 characters"):
        validate_name("n" * 129)


@pytest.mark.parametrize(
    "name",
    ["a b", "a/b", "a:b", "a\\b", "a@b", "a*b", "caf\u00e9", "a\x00b", "a\nb", "tab\t", " x",
     "x ", "a+b", "a#b", "\u0430"],  # the last one is a Cyrillic 'a'
)
def test_names_with_forbidden_characters_are_refused(name: str) -> None:
    with pytest.raises(InvalidName, match=r"may only contain letters, digits, '_', '\.' and '-'"):
        validate_name(name)


def test_empty_name_is_refused() -> None:
    with pytest.raises(InvalidName, match="must not be empty"):
        validate_name("")


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName, match="may not be"):
        validate_name(name)


def test_name_message_says_what_was_checked() -> None:
    with pytest.raises(InvalidName, match=r"^project 'a b' may only contain"):
        validate_name("a b", "project")
    with pytest.raises(InvalidName, match=r"^entity must not be empty"):
        validate_name("", "entity")


def test_type_follows_the_name_rules_and_says_type() -> None:
    assert validate_type("dataset") == "dataset"
    with pytest.raises(InvalidName, match=r"^type 'my type' may only contain"):
        validate_type("my type")
    with pytest.raises(InvalidName, match=r"^type must not be empty"):
        validate_type("")
    with pytest.raises(InvalidName, match=r"^type .* longer than 128"):
        validate_type("t" * 129)


def test_invalid_name_is_a_value_error_and_an_artifactfs_error() -> None:
    with pytest.raises(ValueError) as info:
        validate_name("bad name")
    assert isinstance(info.value, ArtifactFSError)
    assert isinstance(info.value, InvalidName)


# ---- aliases ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias",
    ["latest", "best", "prod", "v1-best", "V1", "version1", "v", "v1.0", "va", "1",
     "with space", "caf\u00e9", "a" * MAX_NAME_LENGTH, "x.y-z_w"],
)
def test_valid_aliases_are_returned_unchanged(alias: str) -> None:
    assert validate_alias(alias) == alias


@pytest.mark.parametrize("alias", ["a/b", "/", "a:b", ":", "best/", ":best"])
def test_aliases_may_not_hold_slash_or_colon(alias: str) -> None:
    with pytest.raises(InvalidName, match="may not contain '/', ':'"):
        validate_alias(alias)


@pytest.mark.parametrize("alias", ["a\x00", "a\nb", "\tb", "x\x7f", "x\x1f"])
def test_aliases_may_not_hold_control_characters(alias: str) -> None:
    with pytest.raises(InvalidName, match="control characters"):
        validate_alias(alias)


def test_alias_length_limit() -> None:
    validate_alias("a" * 128)
    with pytest.raises(InvalidName, match="longer than 128 characters"):
        validate_alias("a" * 129)


def test_empty_alias_is_refused() -> None:
    with pytest.raises(InvalidName, match="alias must not be empty"):
        validate_alias("")


@pytest.mark.parametrize("alias", [".", ".."])
def test_dot_aliases_are_refused(alias: str) -> None:
    with pytest.raises(InvalidName, match="may not be"):
        validate_alias(alias)


@pytest.mark.parametrize("alias", ["v0", "v1", "v9", "v10", "v123456"])
def test_version_index_is_not_an_alias(alias: str) -> None:
    with pytest.raises(InvalidName, match="version index"):
        validate_alias(alias)
    # ... but it may name a version where one is expected
    assert validate_alias(alias, allow_version=True) == alias


@pytest.mark.parametrize("alias", ["v01", "v007"])
def test_zero_padded_version_index_is_not_an_alias(alias: str) -> None:
    # docs/architecture.md: a label of the form v<digits> is a version, never an alias.
    with pytest.raises(InvalidName, match="version index"):
        validate_alias(alias)


def test_allow_version_still_checks_the_other_rules() -> None:
    with pytest.raises(InvalidName, match="may not contain"):
        validate_alias("v1/x", allow_version=True)
    with pytest.raises(InvalidName, match="must not be empty"):
        validate_alias("", allow_version=True)


# ---- version labels ---------------------------------------------------------------------


@pytest.mark.parametrize(("label", "index"), [("v0", 0), ("v1", 1), ("v42", 42), ("v1000", 1000)])
def test_version_labels_round_trip(label: str, index: int) -> None:
    assert parse_version_label(label) == index
    assert version_label(index) == label


@pytest.mark.parametrize("label", ["latest", "best", "V1", "v", "v-1", "v1a", "1", "vv1", " v1"])
def test_other_labels_are_aliases(label: str) -> None:
    assert parse_version_label(label) is None


# ---- refs -------------------------------------------------------------------------------


def test_ref_without_alias_means_latest() -> None:
    ref = parse_ref("vision/mnist")
    assert ref == Ref(project="vision", name="mnist", alias=LATEST, entity=None)
    assert ref.alias == "latest"
    assert ref.version_index is None


def test_ref_with_alias() -> None:
    ref = parse_ref("vision/mnist:best")
    assert (ref.entity, ref.project, ref.name, ref.alias) == (None, "vision", "mnist", "best")
    assert ref.version_index is None


def test_ref_with_version() -> None:
    ref = parse_ref("vision/mnist:v3")
    assert ref.alias == "v3"
    assert ref.version_index == 3


def test_ref_with_entity() -> None:
    ref = parse_ref("team/vision/mnist:v0")
    assert (ref.entity, ref.project, ref.name, ref.alias) == ("team", "vision", "mnist", "v0")
    assert ref.version_index == 0
    assert str(ref) == "team/vision/mnist:v0"


def test_ref_str_round_trips() -> None:
    for text in ("p/n:latest", "e/p/n:v12", "e/p/n:best-one"):
        assert str(parse_ref(text)) == text
        assert parse_ref(str(parse_ref(text))) == parse_ref(text)
    assert str(parse_ref("p/n")) == "p/n:latest"


def test_with_entity_fills_only_a_missing_entity() -> None:
    assert parse_ref("p/n").with_entity("local").entity == "local"
    assert parse_ref("team/p/n").with_entity("local").entity == "team"
    assert parse_ref("p/n:best").with_entity("x") == Ref("p", "n", "best", "x")


def test_bare_name_needs_a_default_project() -> None:
    with pytest.raises(InvalidName, match=r"\[ENTITY/\]PROJECT/NAME"):
        parse_ref("mnist")
    assert parse_ref("mnist", default_project="vision") == Ref("vision", "mnist")
    assert parse_ref("mnist:v2", default_project="vision").version_index == 2
    # the default applies only to a bare name
    assert parse_ref("p/n", default_project="vision").project == "p"


@pytest.mark.parametrize("text", ["a/b/c/d", "a/b/c/d:v0", "a/b/c/d/e"])
def test_ref_with_too_many_parts_is_refused(text: str) -> None:
    with pytest.raises(InvalidName, match=r"must have the form \[ENTITY/\]PROJECT/NAME"):
        parse_ref(text)


def test_empty_ref_is_refused() -> None:
    with pytest.raises(InvalidName, match="ref must not be empty"):
        parse_ref("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/mnist", "project must not be empty"),
        ("vision/", "artifact name must not be empty"),
        ("/", "project must not be empty"),
        ("team//mnist", "project must not be empty"),
        ("/vision/mnist", "entity must not be empty"),
        (":v1", "ref ':v1' must have the form"),
    ],
)
def test_ref_with_empty_parts_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        parse_ref(text)


def test_ref_ending_with_colon_is_refused() -> None:
    with pytest.raises(InvalidName, match="ends with ':'"):
        parse_ref("vision/mnist:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vi sion/mnist", "^project 'vi sion' may only contain"),
        ("vision/mn ist", "^artifact name 'mn ist' may only contain"),
        ("te am/vision/mnist", "^entity 'te am' may only contain"),
        ("vision/" + "n" * 129, "^artifact name .* longer than 128"),
        ("p" * 129 + "/mnist", "^project .* longer than 128"),
        ("vision/..", "^artifact name may not be '..'"),
    ],
)
def test_ref_parts_follow_the_name_rules(text: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        parse_ref(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vision/mnist:a:b", "may not contain '/', ':'"),
        ("vision/mnist:a/b", "may not contain '/', ':'"),
        ("vision/mnist:a\nb", "control characters"),
        ("vision/mnist:" + "a" * 129, "longer than 128"),
    ],
)
def test_ref_alias_follows_the_alias_rules(text: str, message: str) -> None:
    with pytest.raises(InvalidName, match=message):
        parse_ref(text)


def test_ref_alias_of_128_characters_is_accepted() -> None:
    assert parse_ref("vision/mnist:" + "a" * 128).alias == "a" * 128


@pytest.mark.parametrize("alias", ["a\ud800", "\udcff", "x\x7f", "tab\tx", "esc\x1b[31m"])
def test_alias_with_a_surrogate_or_control_character_is_refused_escaped(alias: str) -> None:
    # a lone surrogate can not be written to SQLite; a control character would print raw
    with pytest.raises(InvalidName, match="control characters or surrogates") as info:
        validate_alias(alias)
    assert str(info.value).isprintable()
