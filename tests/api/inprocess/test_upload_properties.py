"""Property tests of the resumable upload protocol's header parsers and chunk reassembly.

- ``is_decimal_count`` (X-Goog-Upload-Offset, X-Goog-Upload-Header-Content-Length, int64
  strings in JSON) holds exactly for ASCII digit strings, whatever else ``str.isdigit`` or
  ``int`` accept ('²', '١', '１', signs, spaces, underscores), and ``int`` then reads the value
  an ASCII fold gives.
- ``X-Goog-Upload-Command``: any value splits into the same set of words a reference reading
  gives (commas, case, whitespace, duplicates, unknown words), and never raises.
- Over HTTP, in-process: any offset or content-length header is answered 200 with the number
  it spells in ASCII digits, or a 400 (413 for a size over the limit), never a 500; a wrong
  offset leaves the session active where it was.
- Data cut into random chunks, with wrong offsets sent in between, reassembles to the same
  bytes and sha256.
"""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import httpx
import pytest

from gemserve.api.uploads import _commands
from gemserve.protocol.common import MAX_DECIMAL_DIGITS, is_decimal_count
from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MAX_FILE = 4000
ASCII_DIGITS = "0123456789"
# Characters int() or str.isdigit() treat as digits or number syntax, though none is ASCII 0-9.
LOOKALIKES = "²³¹١٢٣０１９߀०০৪๓໒༣၄႐៤᠕᥆᧐᪐᭐᮰᱀᱐꘠꣐꤀꩐꯰𝟎𝟗 \t+-_.e"
numberish = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(ASCII_DIGITS + LOOKALIKES), min_size=1, max_size=25),
    st.integers(0, 2**200).map(str),
    st.integers(-(2**70), 2**70).map(lambda n: f"{n:+d}"),
    st.integers(0, 2**64).map(lambda n: f" {n} "),
    st.integers(2**63 - 2, 2**64 + 2).map(str),
    st.integers(4290, 4310).map(lambda n: "1" * n),  # about Python's int() digit limit (4300)
    st.integers(4290, 4310).map(lambda n: "0" * n + "7"),
)


def ascii_value(text: str) -> int | None:
    """The reference: the number a non-empty string of ASCII digits spells, else None (also
    past MAX_DECIMAL_DIGITS digits, which int() itself refuses: no byte count is that long)."""
    if not text or len(text) > MAX_DECIMAL_DIGITS or any(c not in ASCII_DIGITS for c in text):
        return None
    value = 0
    for c in text:
        value = value * 10 + ASCII_DIGITS.index(c)
    return value


@settings(max_examples=300, deadline=None)
@given(text=numberish)
def test_decimal_count_is_exactly_ascii_digits(text: str) -> None:
    expected = ascii_value(text)
    assert is_decimal_count(text) == (expected is not None)
    if expected is not None:
        assert int(text) == expected


# ----- X-Goog-Upload-Command --------------------------------------------------------------

WORDS = ("start", "upload", "finalize", "query", "cancel", "jump", "", "upload finalize")
spaces = st.text(alphabet=" \t", max_size=3)


@st.composite
def command_headers(draw: st.DrawFn) -> tuple[str, set[str]]:
    """A header value of known words, randomly cased and padded, and the words it names."""
    words = draw(st.lists(st.sampled_from(WORDS), max_size=5))
    parts = []
    for word in words:
        cased = "".join(c.upper() if draw(st.booleans()) else c for c in word)
        parts.append(draw(spaces) + cased + draw(spaces))
    expected = {w.strip() for w in words if w.strip()}
    return ",".join(parts), expected


def commands_of(value: str) -> set[str]:
    return _commands(SimpleNamespace(headers={"x-goog-upload-command": value}))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(header=command_headers(), junk=st.text())
def test_commands_are_the_words_whatever_their_case_and_spacing(
    header: tuple[str, set[str]], junk: str
) -> None:
    value, expected = header
    assert commands_of(value) == expected
    # Any string at all: a set of non-empty, stripped, lower-case words; never an exception.
    words = commands_of(junk)
    assert all(w and w == w.strip() and w == w.lower() and "," not in w for w in words)


# ----- over HTTP ------------------------------------------------------------------------------

HTTP_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def files(make_api: MakeApi) -> InProcessApi:
    return await make_api(limits={"max_file_bytes": MAX_FILE, "max_tenant_file_bytes": 10**9})


async def query(api: InProcessApi, url: str) -> httpx.Response:
    return await api.client.post(url, headers={"X-Goog-Upload-Command": "query"})


def latin1(text: str) -> bytes:
    """A header value as bytes (a server reads header bytes as Latin-1); controls that HTTP
    forbids in a value are dropped, as no client could send them."""
    raw = text.encode("utf-8", "surrogatepass")
    return bytes(b for b in raw if b >= 0x20 or b == 0x09).strip(b" \t")


@HTTP_SETTINGS
@given(offset=numberish, sent=st.integers(0, 20))
async def test_any_offset_header_is_200_or_400_and_the_session_stays(
    files: InProcessApi, offset: str, sent: int
) -> None:
    url = await files.upload_url(100)
    if sent:
        assert (await files.send(url, b"x" * sent, 0, "upload")).status_code == 200
    raw = latin1(offset)
    response = await files.client.post(
        url,
        content=b"y",
        headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": raw},
    )
    value = ascii_value(raw.decode("latin-1"))
    if value == sent:
        assert response.status_code == 200, response.text
        assert response.headers["x-goog-upload-size-received"] == str(sent + 1)
        return
    assert_envelope(response, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Offset")
    state = await query(files, url)
    assert state.headers["x-goog-upload-status"] == "active"
    assert state.headers["x-goog-upload-size-received"] == str(sent)


@HTTP_SETTINGS
@given(size=numberish)
async def test_any_declared_length_is_read_or_refused(files: InProcessApi, size: str) -> None:
    raw = latin1(size)
    response = await files.client.post(
        "/upload/v1beta/files",
        json={},
        headers={
            **files.headers,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": raw,
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
    )
    value = ascii_value(raw.decode("latin-1"))
    if value is None:
        assert_envelope(response, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length")
    elif value > MAX_FILE:
        assert_envelope(response, 413, "INVALID_ARGUMENT", "exceeds the per-file limit")
    else:
        assert response.status_code == 200, response.text
        url = response.headers["x-goog-upload-url"]
        # The declared size holds: one byte more is refused.
        too_many = await files.send(url, b"z" * (value + 1), 0)
        assert_envelope(too_many, 400, "INVALID_ARGUMENT", f"more than the declared {value}")


@st.composite
def chunked_uploads(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int | None]]]:
    """Data, and a plan: each step a chunk end, and (or None) a wrong offset to try first."""
    data = draw(st.binary(min_size=0, max_size=MAX_FILE))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    plan = []
    for end in [*cuts, len(data)]:
        wrong = draw(st.none() | st.integers(0, 2**64))
        plan.append((end, wrong))
    return data, plan


def command(shout: bool, words: str) -> str:
    """The words as the SDKs write them, or upper-cased with odd spacing."""
    return words.upper().replace(", ", " ,\t") if shout else words


@HTTP_SETTINGS
@given(upload=chunked_uploads(), declared=st.booleans(), shout=st.booleans())
async def test_random_chunks_reassemble(
    files: InProcessApi,
    upload: tuple[bytes, list[tuple[int, int | None]]],
    declared: bool,
    shout: bool,
) -> None:
    data, plan = upload
    url = await files.upload_url(len(data) if declared else None, "application/octet-stream")
    received = 0
    for i, (end, wrong) in enumerate(plan):
        last = i == len(plan) - 1
        if wrong is not None and wrong != received:
            refused = await files.send(url, data[received:end] or b"w", wrong, "upload")
            assert_envelope(refused, 400, "INVALID_ARGUMENT", f"has received {received} bytes")
            state = await query(files, url)
            assert state.headers["x-goog-upload-status"] == "active"
            assert state.headers["x-goog-upload-size-received"] == str(received)
        words = "upload, finalize" if last else "upload"
        response = await files.send(url, data[received:end], received, command(shout, words))
        assert response.status_code == 200, response.text
        received = end
        if not last:
            assert response.headers["x-goog-upload-status"] == "active"
            assert response.headers["x-goog-upload-size-received"] == str(received)
    assert response.headers["x-goog-upload-status"] == "final"
    file = response.json()["file"]
    assert file["sizeBytes"] == str(len(data))
    assert file["sha256Hash"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    download = await files.client.get(
        f"/v1beta/{file['name']}:download", params={"alt": "media"}, headers=files.headers
    )
    assert download.content == data


# ----- regressions ----------------------------------------------------------------------------


async def test_a_number_longer_than_int_reads_is_a_400(files: InProcessApi) -> None:
    """4301 digits: ``int`` raises ValueError (Python's digit limit), which was a 500."""
    url = await files.upload_url(10)
    response = await files.send(url, b"x", "1" * 4301, "upload")  # type: ignore[arg-type]
    assert_envelope(response, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Offset")
    response = await files.start_upload({"mime_type": "text/plain"}, size="9" * 4301)  # type: ignore[arg-type]
    assert_envelope(response, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length")
