"""The live fuzz's independent oracle (fabqual.testing.scsi_oracle) and its WRITE frame generator.

The oracle is checked against SPC examples written out by hand and against real
``sg_decode_sense`` outputs captured on the lab guest (fixtures/outputs/sg3_utils,
origin next to each); the frame generator against the tunnel decoder: every frame it
calls broken must be refused whatever else was drawn, every valid one accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from fabqual.errors import CodecError
from fabqual.ipofc import framing
from fabqual.testing import scsi_oracle as oracle
from fabqual.testing.strategies import data_out_frames

OUTPUTS = Path(__file__).resolve().parents[3] / "fixtures" / "outputs" / "sg3_utils"
INVALID_FIELD_BYTE_2 = bytes.fromhex("700005000000000a0000000024000 0c80002".replace(" ", ""))


def sense_from_origin(name: str) -> bytes:
    command = (OUTPUTS / f"sg_decode_sense_{name}.txt.origin").read_text().splitlines()[0]
    return bytes.fromhex(command.removeprefix("sg_decode_sense ").replace(" ", ""))


@pytest.mark.parametrize(
    "name",
    [
        "invalid_field_in_cdb",
        "parameter_list_length",
        "invalid_field_in_parameter_list",
        "unit_attention_reset",
        "hardware_error",
    ],
)
def test_oracle_reads_sense_as_sg_decode_sense_does(name: str) -> None:
    """On real sg_decode_sense outputs the oracle's key, ASC and SKSV reading agree with sg3_utils'."""
    sense = sense_from_origin(name)
    assert oracle.sg3_agrees(sense, (OUTPUTS / f"sg_decode_sense_{name}.txt").read_text()) == []


def test_a_disagreement_with_sg3_utils_is_reported() -> None:
    """Another key than sg_decode_sense read is named, with both readings."""
    text = (OUTPUTS / "sg_decode_sense_hardware_error.txt").read_text()
    problems = oracle.sg3_agrees(sense_from_origin("unit_attention_reset"), text)
    assert problems and "Hardware Error" in problems[0] and "Unit Attention" in problems[0]


def test_valid_refusal_sense_has_no_problems() -> None:
    """ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at byte 2 of a 6-byte CDB is valid SPC sense."""
    assert oracle.sense_problems(INVALID_FIELD_BYTE_2, cdb_length=6, data_out_length=0) == []


@pytest.mark.parametrize(
    ("sense", "cdb_length", "needle"),
    [
        (bytes.fromhex("7200050000000000"), 6, "fixed format"),
        (bytes.fromhex("700005000000000400000000"), 6, "ASC/ASCQ missing"),
        (bytes.fromhex("700000000000000a000000002400000000000"[:36]), 6, "sense key 0x0"),
        (bytes.fromhex("700005000000000a0000000044000000000000"[:36]), 6, "not a refusal"),
        (bytes.fromhex("700005000000000a00000000240000c8000a"), 6, "outside the 6-byte CDB"),
        (bytes.fromhex("700005000000000a000000002400008000 02".replace(" ", "")), 6, "C/D 0"),
        (bytes.fromhex("700004000000000a0000000044000000000000"[:36]), 6, "Hardware Error"),
    ],
    ids=["descriptor", "short", "no-sense-key", "foreign-asc", "pointer-past-cdb", "cd-mismatch", "hardware-error"],
)
def test_invalid_sense_is_named(sense: bytes, cdb_length: int, needle: str) -> None:
    """Each SPC rule the sense breaks is reported in words that name it."""
    problems = oracle.sense_problems(sense, cdb_length=cdb_length, data_out_length=0)
    assert any(needle in p for p in problems), problems


def test_allocation_length_truncation_is_exact() -> None:
    """INQUIRY with allocation length 5 must return exactly 5 bytes of a 36-byte answer; 4 or 36 are wrong."""
    cdb = bytes.fromhex("120000000500")
    data = bytes([0x06, 0, 5, 2, 31]) + bytes(31)
    assert oracle.cdb_problems(cdb, oracle.Answer(0, data=data[:5]), buffer=4096) == []
    for wrong in (data[:4], data):
        assert oracle.cdb_problems(cdb, oracle.Answer(0, data=wrong), buffer=4096), len(wrong)


def test_status_outside_good_and_check_condition_is_refused() -> None:
    """The handler's opcodes answer GOOD or CHECK CONDITION; REPORT LUNS (LIO's core) any SAM status."""
    assert oracle.cdb_problems(bytes(6), oracle.Answer(0x08), buffer=0)  # BUSY for TEST UNIT READY
    assert oracle.cdb_problems(bytes([0xA0]) + bytes(11), oracle.Answer(0x18), buffer=4096) == []
    assert oracle.cdb_problems(bytes([0xA0]) + bytes(11), oracle.Answer(0x03), buffer=4096)


def test_broken_frames_need_a_parameter_list_error() -> None:
    """A broken frame answered GOOD, or refused with INVALID FIELD IN CDB, is a finding; 1A/00 is not."""
    ok = bytes.fromhex("700005000000000a000000001a0000000000")
    assert oracle.frame_problems("bad_crc", oracle.Answer(2, ok), cdb_length=16, data_out_length=512) == []
    assert oracle.frame_problems("bad_crc", oracle.Answer(0), cdb_length=16, data_out_length=512)
    assert oracle.frame_problems("garbage", oracle.Answer(2, INVALID_FIELD_BYTE_2), cdb_length=16, data_out_length=512)
    assert oracle.frame_problems("valid", oracle.Answer(0), cdb_length=16, data_out_length=512) == []


@given(data_out_frames())
def test_generated_frames_are_what_they_claim(drawn: tuple[str, bytes]) -> None:
    """Padded to whole blocks as a WRITE carries it, a frame called valid decodes and a broken one never does."""
    kind, raw = drawn
    padded = raw + bytes(-len(raw) % 512 or (512 if not raw else 0))
    if kind == "valid":
        framing.decode_frame(padded)
    else:
        with pytest.raises(CodecError):
            framing.decode_frame(padded)


def test_a_batch_interleaves_cdbs_frames_and_reads() -> None:
    """requests_for() keeps every CDB that is sent, every frame (big ones at the largest transfer) and the READs."""
    from fabqual.testing import live_fuzz

    cdbs = [bytes(6), bytes.fromhex("8800000000000000000000000800 0000".replace(" ", "")), bytes([0x5F]) + bytes(9)]
    frames = [("valid", framing.encode_frame(framing.Frame(1, (b"x",)))), ("garbage", b"nope")]
    requests = live_fuzz.requests_for(cdbs, frames, reads=2, max_transfer=1 << 20, big=[True, False])
    assert [r.what for r in requests].count("read") == 2
    assert [r.what for r in requests if r.what != "read"] == ["cdb", "frame:valid", "frame:garbage"]
    assert {r.length for r in requests if r.what.startswith("frame")} == {1 << 20, 512}


def test_judge_uses_the_oracle_for_each_kind() -> None:
    """A broken frame answered GOOD and a READ without a frame are findings; a refused JUNK WRITE is not."""
    from fabqual.testing import live_fuzz

    good = {"status": 0, "host_status": 0, "driver_status": 0, "sense": "", "data": ""}
    refused = {**good, "status": 2, "driver_status": 8, "sense": "700005000000000a000000001a0000000000"}
    frame = live_fuzz.frame_request("bad_crc", b"IPFC", 0)
    assert live_fuzz.judge(frame, good) and not live_fuzz.judge(frame, refused)
    assert live_fuzz.judge(live_fuzz.read_request(4096), {**good, "data": "00" * 16})
    write = live_fuzz.cdb_request(bytes.fromhex("2a0000000000000001 00".replace(" ", "")))
    assert write is not None and write.data_out == live_fuzz.JUNK and not live_fuzz.judge(write, refused)
    assert live_fuzz.judge(write, {**good, "host_status": 7})
