"""Parameters: a value is text wherever it stands, or the command is refused."""

import subprocess

import pytest

from diag.commands import parameters
from diag.commands.runner import SHELL

EVIL = "$(touch {marker}); ;rm -rf x `id` \"' \\ \n{{{{other}}}}"


def run(script: str, env: dict[str, str]) -> str:
    return subprocess.run([SHELL, "-c", script], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", **env}).stdout


@pytest.mark.parametrize("template", [
    "printf '%s' {{v}}",
    "printf '%s' \"{{v}}\"",
    "printf '%s' \"pre{{v}}post\"",
    "printf '%s' \"$(printf '%s' {{v}})\"",
    "x={{v}}; printf '%s' \"$x\"",
])
def test_value_arrives_verbatim(template, tmp_path):
    marker = tmp_path / "pwned"
    value = EVIL.format(marker=marker)
    script, env = parameters.substitute(template, {"v": value}, {})
    assert marker.name not in script  # the value is not in the text the shell parses
    out = run(script, env)
    expected = value
    if "pre{{v}}post" in template:
        expected = "pre" + value + "post"
    assert out == expected
    assert not marker.exists()


@pytest.mark.parametrize("template", [
    "cat <<EOF\n{{v}}\nEOF\n",
    "cat <<'EOF'\n{{v}}\nEOF\n",
    "echo ok # {{v}}\n",
    "echo `echo {{v}}`",
    "echo ${HOME:-{{v}}}",
    "echo $(( {{v}} + 1 ))",
    "echo $'{{v}}'",
    "printf '%s' 'pre{{v}}post'",  # would stay literal text: the value is not in the script
])
def test_unsafe_places_are_refused(template):
    with pytest.raises(parameters.ParameterError) as e:
        parameters.names(template)
    assert e.value.field == "content"


def test_names_builtins_and_limits():
    assert parameters.names("echo {{a}} {{ b }} {{a}} {{diag::InstanceId}}") == ["a", "b"]
    with pytest.raises(parameters.ParameterError):
        parameters.names("echo {{diag::Nope}}")
    with pytest.raises(parameters.ParameterError):
        parameters.names(" ".join(f"{{{{p{i}}}}}" for i in range(21)))
    # after a here-document ends, placeholders are allowed again
    assert parameters.names("cat <<EOF\nplain\nEOF\necho {{z}}") == ["z"]


def test_values_must_match_the_parameters():
    with pytest.raises(parameters.ParameterError) as e:
        parameters.check_values(["a"], {"a": "1", "b": "2"})
    assert e.value.field == "parameters.b"
    with pytest.raises(parameters.ParameterError) as e:
        parameters.check_values(["a", "c"], {"a": "1"})
    assert e.value.field == "parameters.c"
