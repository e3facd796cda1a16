"""Each role README's variable table is what scripts/role_docs.py renders from the role's
argument spec and defaults, so a variable is described in one place."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROLES, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import role_docs

README = """# demo

Intro.

## Variables

```yaml
# a comment, not a heading
```

{begin}
| old | table |
{end}

Text after the table.

## Example

Nothing generated here.
"""


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_readme_table_is_rendered_from_the_argument_spec(role: Path) -> None:
    assert (role / "README.md").read_text() == role_docs.rendered_readme(role), (
        f"roles/{role.name}/README.md: its variable table is not what meta/argument_specs.yml"
        " renders; run `make docs` (python scripts/role_docs.py)"
    )


def test_every_role_with_an_argument_spec_is_rendered() -> None:
    assert role_docs.documented_roles(ROOT) == ROLES


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (4096, "`4096`"),
        (1.0, "`1.0`"),
        (True, "`true`"),
        ([], "`[]`"),
        ({}, "`{}`"),
        ("", '`""`'),
        ("kit-app", "`kit-app`"),
        ("3.11", '`"3.11"`'),
        ("no", '`"no"`'),
        ("*", '`"*"`'),
        ("{{ private_ip }}", '`"{{ private_ip }}"`'),
        (["{{ private_ip }}"], '`["{{ private_ip }}"]`'),
        ([80, 443], "`[80, 443]`"),
        (["high", "default", "low"], "`[high, default, low]`"),
        ({"POST": 600}, "`{POST: 600}`"),
        ({"vm.overcommit_memory": 1}, "`{vm.overcommit_memory: 1}`"),
    ],
)
def test_a_short_default_is_shown_as_inline_yaml(value: object, shown: str) -> None:
    assert role_docs.default_text("x", {}, {"x": value}) == shown


@pytest.mark.parametrize(
    "value",
    [
        [{"name": "sessions", "port": 6379}],
        ["ca-certificates", "curl", "gnupg", "iproute2", "less", "locales", "lsof", "procps"],
        "{{ [ansible_facts['processor_vcpus'] | default(1) | int * 2 + 1, 4] | max }}",
    ],
    ids=["nested", "long-list", "long-jinja"],
)
def test_a_long_or_nested_default_points_to_the_defaults_file(value: object) -> None:
    assert role_docs.default_text("x", {}, {"x": value}) == "see `defaults/main.yml`"


def test_a_variable_without_a_default_shows_whether_it_is_required() -> None:
    assert role_docs.default_text("x", {"required": True}, {}) == "required"
    assert role_docs.default_text("x", {}, {}) == "none"


def test_inline_yaml_reads_back_as_the_default() -> None:
    for value in ["kit_app.wsgi:app", "10240 65000", "a #b", "yes", "{x}", "[1]", "- a"]:
        text = role_docs.flow([value])
        assert text is not None
        assert yaml.safe_load(text) == [value], text


def test_a_row_escapes_what_markdown_would_swallow() -> None:
    default = role_docs.default_text("x", {}, {"x": "{{ vault_x | default('') }}"})
    assert role_docs.cell(default) == "`\"{{ vault_x \\| default('') }}\"`"
    assert role_docs.cell(role_docs.prose('The <db>_ro database, "*" for all')) == (
        'The \\<db>_ro database, "\\*" for all'
    )


def test_a_list_description_is_joined_into_one_line() -> None:
    option = {"description": ["First paragraph,\n  wrapped.", "Second one."]}
    assert role_docs.description(option) == "First paragraph, wrapped. Second one."


def test_only_the_lines_between_the_markers_are_replaced() -> None:
    readme = README.format(begin=role_docs.BEGIN, end=role_docs.END)
    result = role_docs.with_table(readme, ["| new |"], "demo/README.md")
    assert result == readme.replace("| old | table |\n", "| new |\n")


@pytest.mark.parametrize(
    "readme",
    [
        "# demo\n\nNo section.\n",
        "# demo\n\n## Variables\n\n| hand | written |\n",
        README.format(begin="", end=role_docs.END),
        README.format(begin=role_docs.END, end=role_docs.BEGIN),
    ],
    ids=["no-section", "no-markers", "no-begin", "reversed"],
)
def test_a_readme_without_its_markers_is_named(readme: str) -> None:
    with pytest.raises(role_docs.DocsError, match=re.escape("demo/README.md")):
        role_docs.with_table(readme, ["| new |"], "demo/README.md")


@pytest.fixture
def kit_copy(tmp_path: Path) -> Path:
    """The roles' specs, defaults and READMEs, copied where the script may rewrite them."""
    for role in role_docs.documented_roles(ROOT):
        for name in ("meta/argument_specs.yml", "defaults/main.yml", "README.md"):
            target = tmp_path / "roles" / role.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(role / name, target)
    return tmp_path


def test_check_names_every_stale_readme_and_rewriting_fixes_it(
    kit_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert role_docs.main(["--check"], root=kit_copy) == 0
    spec = kit_copy / "roles" / "redis" / "meta" / "argument_specs.yml"
    data = yaml.safe_load(spec.read_text())
    data["argument_specs"]["main"]["options"]["redis_app_user"]["description"] = "Redis user."
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    readme = kit_copy / "roles" / "rq_worker" / "README.md"
    readme.write_text(readme.read_text().replace("| `2` |", "| `3` |"))
    capsys.readouterr()
    assert role_docs.main(["--check"], root=kit_copy) == 1
    out = capsys.readouterr().out
    assert "roles/redis/README.md" in out
    assert "roles/rq_worker/README.md" in out
    assert "roles/app/README.md" not in out
    assert "make docs" in out
    assert role_docs.main([], root=kit_copy) == 0
    assert (
        "| `redis_app_user` | `app` | Redis user. |"
        in (kit_copy / "roles" / "redis" / "README.md").read_text()
    )
    assert role_docs.main(["--check"], root=kit_copy) == 0
