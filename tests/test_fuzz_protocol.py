"""Protocol fuzzing of /orpheus.v1.TTS/Synthesize against ONE real server process.

Hypothesis builds SynthesizeRequest sequences (valid, out of order, absurd values); a seeded
generator sends raw random and mutated bytes through a generic stub. The node must never
crash, end every call with a well-formed status and leak no session or engine request.
The default run is a few hundred cases; `make test-slow` runs the 2,000-case acceptance run.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_server import ServerProcess

from inference_server.proto import tts_pb2 as pb

METHOD = "/orpheus.v1.TTS/Synthesize"
CASE_TIMEOUT_S = 20.0  # every case is tiny: a call still open by then is a hung session
QUICK, FULL = 250, 1000  # cases per kind (hypothesis, raw) in the default and slow runs
OK_OR_EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class FuzzTarget:
    """One node and one channel shared by every case; final codes tallied.

    The sync client is used on purpose: grpc-aio clients can replace the server's status
    with "Internal error from Core" when a write races the end of the call (grpc/grpc#36066).
    """

    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(proc.address)
        self.codes: Counter[str] = Counter()

    def send(self, payloads: list[bytes]) -> tuple[grpc.StatusCode, str]:
        call = self.channel.stream_stream(METHOD)(
            iter(payloads), timeout=CASE_TIMEOUT_S
        )  # bytes in/out
        try:
            for raw in call:
                pb.SynthesizeResponse.FromString(raw)  # every response parses
        except grpc.RpcError:
            pass
        code, details = call.code(), call.details() or ""
        self.codes[code.name] += 1
        return code, details

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    proc = ServerProcess(tmp_path_factory.mktemp("fuzz") / "server.log", ("--capacity", "64"))
    proc.start()
    t = FuzzTarget(proc)
    yield t
    t.close()
    proc.stop()


# ---- hypothesis: structured but hostile request sequences ----------------------------

short_text = st.text(max_size=24)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
sampling = st.builds(pb.SamplingOptions, max_tokens=st.integers(7, 14)) | st.builds(
    pb.SamplingOptions,
    temperature=st.just(0.0) | floats,
    top_p=st.just(0.0) | floats,
    repetition_penalty=st.just(0.0) | floats,
    max_tokens=st.integers(1, 14),  # keep generations tiny (0 would mean "server default")
    seed=st.integers(0, 2**64 - 1),
)
session_start = st.builds(
    pb.SessionStart,
    session_id=st.one_of(
        st.just(""),
        st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
        short_text,
        st.text(min_size=200, max_size=300),
    ),
    voice=st.sampled_from(["tara"] * 6 + ["", "leo", "nobody", "../etc", "TARA", "ta ra"]),
    model=st.sampled_from([""] * 6 + ["tiny-random", "other-model"]),
    sampling=sampling,
    audio_format=st.just(pb.AudioFormat())
    | st.builds(
        pb.AudioFormat,
        encoding=st.integers(0, 3),
        sample_rate=st.sampled_from([0, 24000, 16000, 2**32 - 1]),
        num_channels=st.integers(0, 3),
    ),
    trim_head_silence=st.booleans(),
    resume=st.just(pb.ResumeFrom())
    | st.builds(
        pb.ResumeFrom,
        segment_id=st.one_of(st.just(""), short_text),
        chars_done=st.integers(0, 2**32 - 1),
        next_sequence=st.integers(0, 2**64 - 1),
    ),
)
request = st.one_of(
    st.builds(lambda s: pb.SynthesizeRequest(start=s), session_start),
    st.builds(
        lambda t, s: pb.SynthesizeRequest(text=pb.TextChunk(text=t, segment_id=s)),
        short_text,
        st.sampled_from(["", "", "a", "b", "seg-0"]),
    ),
    st.builds(
        lambda s: pb.SynthesizeRequest(flush=pb.Flush(segment_id=s)),
        st.sampled_from(["", "a", "zz"]),
    ),
    st.just(pb.SynthesizeRequest(end_input=pb.EndInput())),
    st.just(pb.SynthesizeRequest()),
)
plausible_start = st.builds(
    pb.SessionStart,
    session_id=st.just("") | st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
    voice=st.sampled_from(["tara", "leo", "zoe"]),
    sampling=st.builds(pb.SamplingOptions, max_tokens=st.integers(7, 14), seed=st.integers(0, 9)),
)
sequences = st.one_of(
    st.lists(request, max_size=8),
    st.builds(
        lambda s, rest: [pb.SynthesizeRequest(start=s), *rest],
        session_start,
        st.lists(request, max_size=7),
    ),
    st.builds(
        lambda s, rest: [pb.SynthesizeRequest(start=s), *rest],
        plausible_start,
        st.lists(request, max_size=7),
    ),
)


def fuzz_sequences(target: FuzzTarget, cases: int) -> None:
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(sequences)
    def case(msgs: list[pb.SynthesizeRequest]) -> None:
        code, details = target.send([m.SerializeToString() for m in msgs])
        assert code in OK_OR_EXPECTED, (code, details, msgs)
        assert code == grpc.StatusCode.OK or details, (code, msgs)  # a refusal says why

    case()


# ---- raw bytes: random and mutated serialized messages ---------------------------------

VALID = [
    pb.SynthesizeRequest(
        start=pb.SessionStart(voice="tara", sampling=pb.SamplingOptions(max_tokens=7))
    ),
    pb.SynthesizeRequest(text=pb.TextChunk(text="Hi there.")),
    pb.SynthesizeRequest(flush=pb.Flush()),
    pb.SynthesizeRequest(end_input=pb.EndInput()),
]


def raw_payloads(rng: random.Random) -> list[bytes]:
    """1-4 messages: random bytes, or valid messages with bytes flipped/cut/appended."""
    out = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.4:
            out.append(rng.randbytes(rng.randint(0, 64)))
            continue
        data = bytearray(rng.choice(VALID).SerializeToString())
        if kind < 0.7 and data:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.85:
            data = data[: rng.randint(0, len(data))]
        else:
            data += rng.randbytes(rng.randint(1, 16))
        out.append(bytes(data))
    return out


def fuzz_raw(target: FuzzTarget, cases: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(cases):
        payloads = raw_payloads(rng)
        code, details = target.send(payloads)
        assert code in OK_OR_EXPECTED, (code, details, payloads)


def assert_node_clean(target: FuzzTarget) -> None:
    """Alive, healthy and with no session or engine request left behind."""
    assert target.proc.alive(), target.proc.log()
    for _ in range(50):
        m = target.proc.metrics()
        if m.get("orpheus_live_sessions") == 0 and m.get("orpheus_engine_live_requests") == 0:
            break
        time.sleep(0.1)
    assert m["orpheus_live_sessions"] == 0 and m["orpheus_engine_live_requests"] == 0
    ok = target.send([m.SerializeToString() for m in VALID])  # still serves real sessions
    assert ok[0] == grpc.StatusCode.OK, ok


def run(target: FuzzTarget, cases: int, seed: int) -> None:
    t0 = time.monotonic()
    fuzz_sequences(target, cases)
    fuzz_raw(target, cases, seed)
    assert_node_clean(target)
    print(f"\nfuzz: {2 * cases} cases in {time.monotonic() - t0:.1f}s, codes {dict(target.codes)}")


START = pb.SynthesizeRequest(start=pb.SessionStart(sampling=pb.SamplingOptions(max_tokens=7)))


@pytest.mark.parametrize(
    "tail",
    [
        [pb.SynthesizeRequest(text=pb.TextChunk())],  # found by the fuzzer: used to hang
        [pb.SynthesizeRequest(text=pb.TextChunk(segment_id="seg-0"))],
        [pb.SynthesizeRequest(text=pb.TextChunk(text="  "))],
        [
            pb.SynthesizeRequest(text=pb.TextChunk(text="Hi.")),
            pb.SynthesizeRequest(text=pb.TextChunk()),
        ],
    ],
)
def test_empty_trailing_segment_ends_the_session(target: FuzzTarget, tail: list) -> None:
    """Half-closing with an empty open segment ends the call OK, without a SegmentDone for it."""
    call = target.channel.stream_stream(METHOD)(
        iter([START.SerializeToString(), *(m.SerializeToString() for m in tail)]),
        timeout=CASE_TIMEOUT_S,
    )
    kinds = [pb.SynthesizeResponse.FromString(raw).WhichOneof("kind") for raw in call]
    assert call.code() == grpc.StatusCode.OK
    assert kinds.count("segment_done") == (1 if tail[0].text.text.strip() else 0)


def test_session_id_reused_right_after_an_aborted_session(target: FuzzTarget) -> None:
    """Found by the fuzzer: the new session's engine request collided with the old one's
    pending abort and never produced a token."""
    start = pb.SynthesizeRequest(
        start=pb.SessionStart(session_id="again", sampling=pb.SamplingOptions(max_tokens=7))
    )
    speak = pb.SynthesizeRequest(text=pb.TextChunk(text="Hi there."))
    for _ in range(20):
        aborted = target.send(
            [m.SerializeToString() for m in (start, speak, pb.SynthesizeRequest())]
        )
        assert aborted[0] == grpc.StatusCode.INVALID_ARGUMENT
        ok = target.send([m.SerializeToString() for m in (start, speak)])
        assert ok[0] == grpc.StatusCode.OK, ok


def test_fuzz_protocol(target: FuzzTarget) -> None:
    run(target, QUICK, seed=1)


@pytest.mark.slow
def test_fuzz_protocol_2000_cases(target: FuzzTarget) -> None:
    run(target, FULL, seed=2)
