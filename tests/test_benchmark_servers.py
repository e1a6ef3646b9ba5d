"""The benchmarks' own servers speak enough of their protocols for Herald's clients: the lean
SMTP sink (benchmarks/sink.py) and the lean OpenAI-compatible server (benchmarks/openai_proc.py)."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import openai
import pytest

from benchmarks.sink import Sink
from herald.email.mime import build_message, message_id_for
from herald.email.render import ChangeView, render_notification
from herald.email.smtp import SmtpMailer, SmtpSettings
from herald.enrich.ai import OpenAISummariser
from herald.enrich.ai_async import AsyncOpenAISummariser

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
FROM = "herald@example.com"
TO = "ops@example.com"
REPLY = "Summary: a benchmark item was added."


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


def herald_email(change_id: int) -> bytes:
    """A message as Herald's email step builds it, for one change."""
    change = ChangeView(
        change_id, "bench_items", "INSERT", {"id": change_id}, None, {"name": "widget"},
        datetime(2024, 5, 6, tzinfo=UTC),
    )  # fmt: skip
    rendered = render_notification([change], summary=None, summary_note=None, route="ops")
    return build_message(
        rendered, mail_from=f"Herald <{FROM}>", recipient=TO,
        message_id=message_id_for(change_id, TO, "herald.test"), change_ids=[change_id],
    )  # fmt: skip


def plain_email(change_id: int, body: str) -> bytes:
    return (
        f"From: {FROM}\r\nTo: {TO}\r\nSubject: change {change_id}\r\n"
        f"X-Herald-Change-Id: {change_id}\r\n\r\n{body}"
    ).encode()


def ids(sink: Sink) -> list[int]:
    return [change_id for _, change_id in sink.accepted]


def replies(conn: socket.socket, count: int) -> list[bytes]:
    """The next `count` replies (the last line of each, multi-line ones included)."""
    received = b""
    while True:
        lines = [line for line in received.split(b"\r\n")[:-1] if line[3:4] != b"-"]
        if len(lines) >= count:
            return lines
        chunk = conn.recv(65536)
        assert chunk, f"the sink closed the connection after {received!r}"
        received += chunk


def test_smtplib_sends_several_messages_on_one_connection_and_each_is_counted_once(sink):
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as conn:
        for change_id in (11, 12, 13):
            conn.sendmail(FROM, [TO], herald_email(change_id))

    assert ids(sink) == [11, 12, 13]


def test_herald_mailer_pipelines_its_commands_over_several_connections(sink):
    mailer = SmtpMailer(SmtpSettings.from_url(f"{sink.url}?timeout=10"))
    with ThreadPoolExecutor(4) as pool:
        assert pool.submit(mailer._connection).result()[0].has_extn("pipelining")
        list(
            pool.map(
                lambda change_id: mailer.send(
                    herald_email(change_id), from_addr=FROM, to_addrs=[TO]
                ),
                range(1, 41),
            )
        )
        pool.submit(mailer.close).result()

    assert sorted(ids(sink)) == list(range(1, 41))


def test_a_body_with_lines_starting_with_a_dot_is_one_message_and_the_next_one_follows(sink):
    body = "first\r\n.\r\n..two dots\r\n.\r\n.end\r\n"
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as conn:
        conn.sendmail(FROM, [TO], plain_email(21, body))
        conn.sendmail(FROM, [TO], plain_email(22, "plain\r\n"))

    assert ids(sink) == [21, 22]


def test_pipelined_commands_in_one_packet_are_answered_in_order(sink):
    message = plain_email(31, "hello\r\n") + b".\r\n"
    with socket.create_connection((sink.host, sink.port), timeout=10) as conn:
        assert replies(conn, 1)[0].startswith(b"220")
        conn.sendall(b"EHLO client\r\nNOOP\r\nMAIL FROM:<a@example.com>\r\n"
                     b"RCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")  # fmt: skip
        answered = replies(conn, 6)
        conn.sendall(message + b"MAIL FROM:<a@example.com>\r\nRSET\r\nQUIT\r\n")
        answered += replies(conn, 4)

    assert [line[:3] for line in answered] == [
        b"250", b"250", b"250", b"250", b"250", b"354", b"250", b"250", b"250", b"221",
    ]  # fmt: skip
    assert ids(sink) == [31]


def test_data_split_across_packets_anywhere_is_counted_once(sink):
    """Every byte on its own: the header and the end marker arrive in pieces."""
    message = plain_email(41, "one\r\ntwo\r\n") + b".\r\n"
    with socket.create_connection((sink.host, sink.port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies(conn, 1)
        conn.sendall(b"HELO client\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        replies(conn, 3)
        conn.sendall(b"DATA\r\n")
        assert replies(conn, 1)[0].startswith(b"354")
        for byte in message:
            conn.sendall(bytes([byte]))
        assert replies(conn, 1)[0].startswith(b"250")

    assert ids(sink) == [41]


def test_a_message_without_the_header_is_counted_as_minus_one(sink):
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as conn:
        conn.sendmail(FROM, [TO], b"Subject: hi\r\n\r\nX-Herald-Change-Id: 7\r\n")

    assert ids(sink) == [-1]


def test_unknown_commands_get_502_and_the_session_goes_on(sink):
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as conn:
        assert conn.docmd("VRFY", "ops@example.com")[0] == 502
        assert conn.docmd("STARTTLS")[0] == 502
        assert conn.noop()[0] == 250
        conn.sendmail(FROM, [TO], herald_email(51))

    assert ids(sink) == [51]


def test_reset_empties_the_accepted_list_and_wait_for_sees_new_messages(sink):
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as conn:
        conn.sendmail(FROM, [TO], herald_email(61))
        sink.reset()
        conn.sendmail(FROM, [TO], herald_email(62))

    assert sink.wait_for(1, timeout=10)
    assert sink.count == 1 and ids(sink) == [62]
    assert sink.url == f"smtp://127.0.0.1:{sink.port}"


@pytest.fixture(scope="module")
def ai_url() -> Iterator[str]:
    """`python -m benchmarks.openai_proc 0.01`, as the benchmark starts it (with a latency, so
    the answers wait on timers): the URL comes first."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.openai_proc", "0.01"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait(10)


def test_the_ai_server_answers_the_openai_client(ai_url):
    assert ai_url.startswith("http://127.0.0.1:") and ai_url.endswith("/v1")
    client = openai.OpenAI(api_key="sk-bench", base_url=ai_url, max_retries=0, timeout=10)

    answers = [
        client.chat.completions.create(
            model="bench-model", messages=[{"role": "user", "content": f"Summarise change {n}"}]
        )
        for n in range(3)
    ]  # one kept-alive connection

    assert {a.choices[0].message.content for a in answers} == {REPLY}
    assert {a.choices[0].finish_reason for a in answers} == {"stop"}
    assert {a.model for a in answers} == {"bench-model"}
    assert len({a.id for a in answers}) == 3
    assert answers[0].usage is not None and answers[0].usage.prompt_tokens == 3


def test_herald_summariser_reads_the_ai_servers_answer(ai_url):
    summariser = OpenAISummariser(model="bench-model", api_key="sk-bench", base_url=ai_url)

    summary = summariser.summarise([{"table": "bench_items", "op": "INSERT", "row": {"id": 1}}])

    assert summary.text == REPLY
    assert summary.completion_tokens == len(REPLY.split())


def test_the_ai_server_answers_an_unknown_path_with_404(ai_url):
    client = openai.OpenAI(api_key="sk-bench", base_url=ai_url, max_retries=0, timeout=10)

    with pytest.raises(openai.NotFoundError):
        client.models.list()


def test_herald_async_summariser_reads_the_ai_servers_answer(ai_url):
    summariser = AsyncOpenAISummariser(
        OpenAISummariser(model="bench-model", api_key="sk-bench", base_url=ai_url)
    )

    async def two_summaries() -> list[str]:
        changes = [{"table": "bench_items", "op": "INSERT", "row": {"id": 1}}]
        try:
            summaries = await asyncio.gather(*(summariser.summarise(changes) for _ in range(2)))
        finally:
            await summariser.aclose()
        return [summary.text for summary in summaries]

    assert asyncio.run(two_summaries()) == [REPLY, REPLY]


def post(path: str, body: bytes, *headers: str) -> bytes:
    """A raw HTTP/1.1 POST, its body framed by Content-Length."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chat(model: str) -> bytes:
    return post("/v1/chat/completions", json.dumps({"model": model, "messages": []}).encode())


def http_answers(conn: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """The next `count` answers on `conn`: (status line, body) each."""
    received, answers = b"", list[tuple[bytes, bytes]]()
    while len(answers) < count:
        end = received.find(b"\r\n\r\n")
        if end >= 0:
            head = received[:end].split(b"\r\n")
            length = next(
                int(h.split(b":")[1]) for h in head if h.lower().startswith(b"content-length:")
            )
            if len(received) >= end + 4 + length:
                answers.append((head[0], received[end + 4 : end + 4 + length]))
                received = received[end + 4 + length :]
                continue
        chunk = conn.recv(65536)
        assert chunk, f"the server closed the connection after {received!r}"
        received += chunk
    return answers


def ai_connection(ai_url: str) -> socket.socket:
    port = int(ai_url.rsplit(":", 1)[1].split("/")[0])
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def test_two_requests_pipelined_in_one_packet_get_two_answers_in_order(ai_url):
    with ai_connection(ai_url) as conn:
        conn.sendall(chat("first") + chat("second"))
        answers = http_answers(conn, 2)

    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert [json.loads(body)["model"] for _, body in answers] == ["first", "second"]


def test_a_request_split_byte_by_byte_is_answered_and_the_connection_kept(ai_url):
    with ai_connection(ai_url) as conn:
        for byte in chat("split"):
            conn.sendall(bytes([byte]))
        first = http_answers(conn, 1)
        conn.sendall(chat("next"))
        second = http_answers(conn, 1)

    assert [json.loads(body)["model"] for _, body in first + second] == ["split", "next"]


def test_a_chunked_body_gets_411_and_the_connection_is_closed(ai_url):
    with ai_connection(ai_url) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")  # fmt: skip
        status, _ = http_answers(conn, 1)[0]

        assert status == b"HTTP/1.1 411 Length Required"
        assert conn.recv(65536) == b""


def test_headers_over_64_kb_get_431_and_the_connection_is_closed(ai_url):
    with ai_connection(ai_url) as conn:
        conn.sendall(post("/v1/chat/completions", b"{}", "X-Padding: " + "x" * 70_000))
        status, _ = http_answers(conn, 1)[0]

        assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert conn.recv(65536) == b""


def test_a_raw_request_to_an_unknown_path_gets_404_and_the_connection_goes_on(ai_url):
    with ai_connection(ai_url) as conn:
        conn.sendall(post("/v1/embeddings", b"{}") + chat("after"))
        answers = http_answers(conn, 2)

    assert answers[0][0] == b"HTTP/1.1 404 Not Found"
    assert answers[1][0] == b"HTTP/1.1 200 OK"
