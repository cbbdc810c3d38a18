"""`run` marks from the real bash and zsh integration on a real pty: status, exact output, nonces.

The backend's link feeds a `tether.ConsoleOutput` as the engine will (see
``console.py``); each test types run lines and checks what the marks say
against the bytes in the output log.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator

import pytest
import trio

from tether import encode_shell_mark
from tether.testing import require_peer
from tether_process import ProcessBackend

from .conftest import Spec
from .console import Console, open_console

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptys and /proc: Linux")


@pytest.fixture(params=["bash", "zsh"])
def shell(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_peer(shutil.which(name) is not None, f"{name} not installed")
    return name


@pytest.fixture
async def console(
    backend: ProcessBackend, spec: Spec, shell: str, tmp_path: os.PathLike[str]
) -> AsyncIterator[Console]:
    async with open_console(backend, spec(argv=[shell], cwd=str(tmp_path))) as con:
        assert await con.prompt() == shell
        yield con


async def test_true_and_false_give_0_and_1(console: Console) -> None:
    """The exit status comes from the D mark of the command's own nonce."""
    assert (await console.run("true"))[0].status == 0
    assert (await console.run("false"))[0].status == 1
    assert (await console.run("(exit 42)"))[0].status == 42


async def test_the_output_range_holds_exactly_the_commands_output(console: Console) -> None:
    """Between the C and D marks: the command's bytes, not the echo, not the prompt."""
    result, output = await console.run("printf 'one\\ntwo\\n'; printf '\\x00\\xff'")
    assert result.started and result.status == 0
    assert output == b"one\r\ntwo\r\n\x00\xff"
    assert console.everything().count(b"one\r\ntwo") == 1


async def test_runs_sent_back_to_back_never_answer_for_each_other(console: Console) -> None:
    """Two run lines in one write: each result has its own status and its own output."""
    first, first_tracker = console.output.start_run("echo first; false")
    second, second_tracker = console.output.start_run("echo second")
    await console.send(first + second)
    await console.until(lambda: {first_tracker.nonce, second_tracker.nonce} <= set(console.results))
    one, two = console.results[first_tracker.nonce], console.results[second_tracker.nonce]
    assert (one.status, console.between(one.output_start, one.output_stop)) == (1, b"first\r\n")
    assert (two.status, console.between(two.output_start, two.output_stop)) == (0, b"second\r\n")
    assert one.output_stop <= two.output_start


async def test_a_printed_mark_of_another_nonce_does_not_end_the_run(console: Console) -> None:
    """Output that looks like a D mark (another run's nonce) is just output to this run."""
    fake = encode_shell_mark("D", status=0, nonce="feedfacefeedface").decode().replace("\x1b", "\\033")
    fake = fake.replace("\x07", "\\007")
    result, output = await console.run(f"printf '{fake}'; sleep 0.2; echo real; (exit 3)")
    assert result.status == 3 and output.endswith(b"real\r\n")


async def test_a_command_the_shell_cannot_parse_ends_with_its_status(console: Console, shell: str) -> None:
    """A syntax error runs nothing; the run ends with the shell's status and its complaint as output."""
    result, output = await console.run("echo a; fi")
    assert result.started and result.status == (2 if shell == "bash" else 1)
    assert b"fi" in output and b"a\r\n" not in output
    assert (await console.run("echo after"))[1] == b"after\r\n"


async def test_a_multiline_command_runs_as_one(console: Console) -> None:
    """Several lines are one run: one status, all the output."""
    result, output = await console.run("echo a\n\techo b\nfalse")
    assert result.status == 1 and output == b"a\r\nb\r\n"


async def test_an_interrupted_command_reports_its_signal_status(console: Console) -> None:
    """ctrl-c during a run: the shell's status for SIGINT (130), from the same marks."""
    line, tracker = console.output.start_run("sleep 30")
    await console.send(line)
    await console.until(lambda: tracker.started_at is not None)
    await trio.sleep(0.2)  # let sleep start: the interrupt must reach it, not the shell's reader
    await console.send(b"\x03")
    await console.until(lambda: tracker.nonce in console.results)
    assert console.results[tracker.nonce].status == 130


async def test_cwd_and_last_command_are_reported_without_the_run_prefix(
    console: Console, tmp_path: os.PathLike[str]
) -> None:
    """A run's cd moves the tracked cwd; the recorded last command is the user's, not the wrapper."""
    target = os.path.join(str(tmp_path), "sub dir")
    os.mkdir(target)
    await console.run(f"cd '{target}'")
    assert console.link is not None
    await console.until(lambda: console.link is not None and console.link.current_state().cwd == target)
    state = console.link.current_state()
    assert state.last_command == f"cd '{target}'"
    assert state.extra["shell"] in ("bash", "zsh")


async def test_a_run_typed_before_the_first_prompt_still_completes(
    backend: ProcessBackend, spec: Spec, shell: str
) -> None:
    """Input typed while the shell is starting waits in the terminal; its marks still come."""
    async with open_console(backend, spec(argv=[shell])) as con:
        result, output = await con.run("echo early")
        assert result.status == 0 and output == b"early\r\n"


async def test_a_plain_command_line_starting_a_shell_gets_the_integration(
    backend: ProcessBackend, spec: Spec, shell: str, tmp_path: os.PathLike[str]
) -> None:
    """`command = "bash"` (plain words) runs bash itself: cwd, run and its marks all work."""
    async with open_console(backend, spec(command=f"{shell} -i", cwd=str(tmp_path))) as con:
        assert await con.prompt() == shell
        result, output = await con.run("cd / && pwd")
        assert result.status == 0 and output == b"/\r\n"
        await con.until(lambda: con.link is not None and con.link.current_state().cwd == "/")
