"""ConsoleOutput: the log, the marks found at the log's positions, and the runs waiting on them. Pure."""

from __future__ import annotations

from tether.rules._console import MAX_PENDING_RUNS, ConsoleOutput
from tether.rules._osc import encode_shell_mark
from tether.rules._output import OutputLog, PeerMark


def marks(nonce: str, output: bytes, status: int = 0) -> bytes:
    return encode_shell_mark("C", nonce=nonce) + output + encode_shell_mark("D", status=status, nonce=nonce)


def test_a_run_completes_with_the_log_range_of_its_output() -> None:
    """The result's range is a range of the log: reading it gives the command's bytes."""
    console = ConsoleOutput(OutputLog())
    console.output(b"earlier output\r\n")
    line, tracker = console.start_run("make")
    assert line.startswith(b"__tether_run " + tracker.nonce.encode())
    _, done = console.output(b"$ " + line + b"\n" + marks(tracker.nonce, b"built\r\n", 2))
    (result,) = done
    span = result.output_stop - result.output_start
    assert result.status == 2 and console.log.read(result.output_start, span).data == b"built\r\n"
    assert console.output(marks(tracker.nonce, b"again"))[1] == []  # answered once, then forgotten


def test_a_replayed_chunk_never_completes_a_run_twice_or_early() -> None:
    """Marks are scanned on the bytes the log took: a peer's replay is cut before scanning."""
    console = ConsoleOutput(OutputLog())
    _, tracker = console.start_run("true")
    chunk = marks(tracker.nonce, b"ok\r\n")
    first = console.output_at(PeerMark("pane", 0), chunk)
    assert [r.nonce for r in first[2]] == [tracker.nonce]
    _, tracker2 = console.start_run("true", nonce=tracker.nonce)  # the same nonce reused on purpose
    assert console.output_at(PeerMark("pane", 0), chunk) == (len(chunk), b"", [])
    assert tracker2.result is None


def test_a_mark_cut_by_a_loss_is_not_glued_together() -> None:
    """After a loss the scanner restarts at the log's new position: the half C mark before it is
    dropped, the whole D after it still ends the run, and its range shows the loss."""
    console = ConsoleOutput(OutputLog())
    _, tracker = console.start_run("x")
    whole = marks(tracker.nonce, b"out")
    console.output(whole[:5])
    console.log.mark_lost()
    _, (result,) = console.output(whole[5:])
    assert not result.started and result.output_start == 0
    assert [loss.start for loss in console.log.read(0, 1 << 20).losses] == [5]


def test_the_prompt_mark_says_which_shell_is_there() -> None:
    """`run` needs tether's integration at a prompt; a new program must show it again."""
    console = ConsoleOutput(OutputLog())
    assert console.shell is None
    console.output(b"$ " + encode_shell_mark("A", shell="zsh"))
    assert console.shell == "zsh"
    console.link_ended()
    assert console.shell is None
    console.reattached()
    assert console.shell == "zsh", "a re-attached program keeps its shell"
    console.link_ended()
    console.output(encode_shell_mark("A", shell="bash"))  # the next link's prompt, before it is known as new
    console.program_replaced()
    assert (console.shell, console.awaiting_prompt) == ("bash", False)
    console.link_ended()
    console.program_replaced()
    assert (console.shell, console.awaiting_prompt) == (None, True)


def test_waiting_runs_are_bounded() -> None:
    """More than MAX_PENDING_RUNS runs without an answer: the oldest is given up."""
    console = ConsoleOutput(OutputLog())
    trackers = [console.start_run("sleep 9")[1] for _ in range(MAX_PENDING_RUNS + 1)]
    _, done = console.output(marks(trackers[0].nonce, b"") + marks(trackers[-1].nonce, b""))
    assert [r.nonce for r in done] == [trackers[-1].nonce]


def test_idle_at_prompt_only_when_nothing_started_after_the_last_prompt() -> None:
    """A re-attached shell may be asked for a prompt only while it sits at tether's prompt:
    not after a typed command's line ending, not in a run, not after a gap."""
    prompt = encode_shell_mark("A", shell="bash") + b"$ "
    cases = {
        b"": False,
        b"hello\r\n$ ": False,  # a prompt, but not tether's
        b"out\r\n" + prompt: True,
        b"out\r\n" + prompt + b"ech": True,  # typing, not entered: Enter would run it, as it would by hand
        b"out\r\n" + prompt + b"sleep 9\r\n": False,
        prompt + encode_shell_mark("C", nonce="ab12") + b"x": False,
    }
    for data, idle in cases.items():
        console = ConsoleOutput(OutputLog())
        console.output(data)
        assert console.at_idle_prompt() is idle, data
    console = ConsoleOutput(OutputLog())
    console.output(b"x" * 5000 + prompt)
    assert console.at_idle_prompt()
    console.output(b"y" * 5000)
    assert not console.at_idle_prompt(), "the prompt is out of the window"
