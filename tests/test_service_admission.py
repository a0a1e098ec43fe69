"""Admission by capacity and by the live streams' listeners (real clocks, real time)."""

from __future__ import annotations

import time

import grpc
import pytest

from inference_server.audio.listener import DecodeClass, Listener
from inference_server.errors import Overloaded
from inference_server.service.admission import AdmissionPolicy
from inference_server.service.errors import to_status


def playing(audio_ms: float) -> Listener:
    clock = Listener()
    clock.sent(audio_ms)
    return clock


def test_clock_stalls_instead_of_carrying_a_debt() -> None:
    clock = Listener()
    assert clock.buffer_ms() == 0 and clock.starving_ms() == 0 and not clock.playing
    assert clock.decode_class() is DecodeClass.FIRST_AUDIO
    clock.sent(10.0)
    time.sleep(0.06)
    assert 40 <= clock.starving_ms() <= 200  # dry for ~50 ms
    clock.sent(100.0)  # the listener resumes: the gap is not owed
    assert 50 <= clock.buffer_ms() <= 100.0 and clock.starving_ms() == 0


def test_capacity_refuses_with_resource_exhausted() -> None:
    with pytest.raises(Overloaded) as err:
        AdmissionPolicy(capacity=2).check([Listener(), Listener()])
    assert to_status(err.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "capacity (2" in str(err.value)


def test_refuses_while_half_the_playing_streams_starve() -> None:
    starving = playing(0.0)
    time.sleep(0.05)
    fed = [playing(10_000.0) for _ in range(2)]
    waiting = [Listener() for _ in range(3)]  # not playing yet: they do not count
    policy = AdmissionPolicy(capacity=10, starving_ms=20.0)
    policy.check([starving, *fed, *waiting])  # 1 of 3 playing streams starves: admitted
    with pytest.raises(Overloaded) as err:
        policy.check([starving, fed[0], *waiting])  # 1 of 2
    assert to_status(err.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "behind real time (1 of 2 playing streams" in str(err.value)
    AdmissionPolicy(capacity=10, starving_ms=0).check([starving])  # 0 = capacity only
    AdmissionPolicy(capacity=10, starving_ms=20.0).check(waiting)


def test_measured_realtime_streams_refuse_one_more_speaking_stream_naming_the_flag() -> None:
    speaking = [playing(10_000.0) for _ in range(3)]
    idle = [playing(0.0) for _ in range(5)]  # between turns: their buffers ran dry
    policy = AdmissionPolicy(capacity=32, starving_ms=20.0, realtime_streams=4)
    time.sleep(0.05)  # the idle ones now "starve": that must not count against the node
    policy.check([*speaking, *idle], speaking)  # 3 speaking of 4: admitted
    with pytest.raises(Overloaded) as err:
        policy.check([*speaking, *idle, Listener()], [*speaking, Listener()])
    assert to_status(err.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--realtime-streams" in str(err.value) and "4 are speaking" in str(err.value)
    AdmissionPolicy(capacity=32, realtime_streams=0).check(speaking * 10)  # 0 = not measured
