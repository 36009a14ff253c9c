"""Scanner output read as a stream: every format parsed, malformed lines reported, bounds held."""

from __future__ import annotations

import io
import ipaddress
import json
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.errors import ConfigError
from notifier.intake import (
    DEFAULT_FINDING,
    FORMATS,
    MAX_LINE,
    MAX_TEXT,
    InputItem,
    InputProblem,
    read_findings,
    sniff_format,
)
from notifier.models import Finding

# real addresses from the captured registry answers, never documentation ranges
V4_A = "74.125.225.229"
V4_B = "62.239.237.1"
V4_C = "196.11.240.215"
V6_A = "2001:4860:4860::8888"
V6_B = "2a00:2381:ffff::1"

# --------------------------------------------------------------------------- samples

PLAIN = f"""\
# exposed Elasticsearch, scan of 2024-03-18
{V4_A}
{V4_B}:9200
[{V6_A}]:443

{V6_B}   # no port known
not-an-address
{V4_C}/24
{V4_C}:99999
""".encode()

GENERIC_CSV = f"""\
ip,port,finding,hostname,observed_at,ticket
{V4_A},9200,Elasticsearch without authentication,search.example.org,2024-03-18T10:11:12Z,T-1
{V4_B},,,,,
bad,80,x,,,
{V6_A},443,"TLS 1.0 only, weak ciphers",,1710756672,T-3
""".encode()

SHADOWSERVER_CSV = f"""\
"timestamp","ip","protocol","port","hostname","tag","asn","geo","region","city","naics","sic","version","cluster_name"
"2024-03-18 01:23:45","{V4_A}","tcp",9200,"search.example.org","elasticsearch",15169,"US","CALIFORNIA","MOUNTAIN VIEW",0,0,"7.10.2","prod"
"2024-03-18 01:24:00","{V4_B}","tcp",9200,"","elasticsearch",5400,"GB","LONDON","LONDON",0,0,"6.8.0","logs"
""".encode()  # noqa: E501

JSONL = f"""\
{{"ip": "{V4_A}", "port": 9200, "finding": "Elasticsearch without authentication", "hostname": "search.example.org", "observed_at": "2024-03-18T10:11:12Z", "ticket": "T-1", "extra": {{"team": "blue"}}}}
{{"ip": "{V6_B}", "port": "6379", "timestamp": 1710756672}}
{{"ip": "{V4_B}", "port": 9200
["not", "an", "object"]
{{"ip": "{V4_C}", "port": 70000}}
""".encode()  # noqa: E501

MASSCAN_JSON = f"""\
[
{{   "ip": "{V4_A}",   "timestamp": "1710756672", "ports": [ {{"port": 9200, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 54}} ] }},
{{   "ip": "{V4_B}",   "timestamp": "1710756673", "ports": [ {{"port": 80, "proto": "tcp", "service": {{"name": "http", "banner": "HTTP/1.1 200 OK\\r\\nSet-Cookie: session=SECRETDATA"}} }} ] }},
{{   "ip": "{V4_B}",   "timestamp": "1710756673", "ports": [ {{"port": 81, "proto": "tcp", "status": "closed", "reason": "rst", "ttl": 54}} ] }},
{{   "ip": "{V6_A}",   "timestamp": "1710756674", "ports": [ {{"port": 27017, "proto": "tcp", "status": "open", "reason": "syn-ack", "ttl": 57}} ] }}
]
""".encode()  # noqa: E501

MASSCAN_LIST = f"""\
#masscan
open tcp 9200 {V4_A} 1710756672
open tcp 27017 {V6_A} 1710756673
banner tcp 80 {V4_B} 1710756674 http HTTP/1.0 200 OK\\x0D\\x0AServer: SECRETDATA
closed tcp 22 {V4_B} 1710756675
open tcp 9200 999.1.2.3 1710756676
# end
""".encode()

NMAP_XML = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<?xml-stylesheet href="file:///usr/bin/../share/nmap/nmap.xsl" type="text/xsl"?>
<!-- Nmap 7.94 scan initiated Mon Mar 18 10:11:12 2024 as: nmap -sV -sU -sS -oX scan.xml -->
<nmaprun scanner="nmap" args="nmap -sV -sU -sS -oX scan.xml" start="1710756672" startstr="Mon Mar 18 10:11:12 2024" version="7.94" xmloutputversion="1.05">
<scaninfo type="syn" protocol="tcp" numservices="3" services="22,443,9200"/>
<verbose level="0"/>
<debugging level="0"/>
<hosthint><status state="up" reason="unknown-response" reason_ttl="0"/>
<address addr="{V4_A}" addrtype="ipv4"/>
<hostnames>
</hostnames>
</hosthint>
<host starttime="1710756673" endtime="1710756690"><status state="up" reason="syn-ack" reason_ttl="54"/>
<address addr="{V4_A}" addrtype="ipv4"/>
<hostnames>
<hostname name="ord08s08-in-f5.1e100.net" type="PTR"/>
<hostname name="search.example.org" type="user"/>
</hostnames>
<ports><port protocol="tcp" portid="22"><state state="closed" reason="reset" reason_ttl="54"/><service name="ssh" method="table" conf="3"/></port>
<port protocol="tcp" portid="9200"><state state="open" reason="syn-ack" reason_ttl="54"/><service name="http" product="Elasticsearch REST API" version="7.10.2" extrainfo="name: node-1" method="probed" conf="10"><cpe>cpe:/a:elastic:elasticsearch:7.10.2</cpe></service><script id="http-title" output="customers index SECRETDATA"><elem key="title">SECRETDATA</elem></script></port>
<port protocol="tcp" portid="443"><state state="open" reason="syn-ack" reason_ttl="54"/><service name="http" product="nginx" tunnel="ssl" method="probed" conf="10"/><script id="ssl-cert" output="Subject: commonName=SECRETDATA.internal"/></port>
</ports>
<times srtt="1234" rttvar="567" to="100000"/>
</host>
<host starttime="1710756680" endtime="1710756690"><status state="up" reason="echo-reply" reason_ttl="244"/>
<address addr="{V6_B}" addrtype="ipv6"/>
<address addr="00:11:22:33:44:55" addrtype="mac" vendor="Example"/>
<hostnames/>
<ports><extraports state="filtered" count="997"><extrareasons reason="no-response" count="997"/></extraports>
<port protocol="udp" portid="161"><state state="open" reason="udp-response" reason_ttl="244"/><service name="snmp" method="probed" conf="10"/></port>
<port protocol="tcp" portid="6379"><state state="open" reason="syn-ack" reason_ttl="244"/></port>
<port protocol="tcp" portid="8080"><state state="open|filtered" reason="no-response"/></port>
</ports>
</host>
<host starttime="1710756681"><status state="up"/>
<address addr="999.1.1.1" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="80"><state state="open"/></port></ports>
</host>
<runstats><finished time="1710756690" timestr="Mon Mar 18 10:11:30 2024" elapsed="18.12" exit="success"/><hosts up="3" down="0" total="3"/>
</runstats>
</nmaprun>
""".encode()  # noqa: E501

NUCLEI = f"""\
{{"template":"http/misconfiguration/elasticsearch-unauth.yaml","template-url":"https://cloud.projectdiscovery.io/public/elasticsearch-unauth","template-id":"elasticsearch-unauth","template-path":"/root/nuclei-templates/http/misconfiguration/elasticsearch-unauth.yaml","info":{{"name":"Elasticsearch - Unauthenticated Access","author":["pdteam"],"tags":["elastic","unauth"],"description":"Elasticsearch was accessed without authentication.","reference":["https://www.elastic.co/guide/"],"severity":"high","metadata":{{"max-request":1}},"classification":{{"cve-id":null,"cwe-id":["cwe-200"]}}}},"type":"http","host":"{V4_A}","port":"9200","scheme":"http","url":"http://{V4_A}:9200","matched-at":"http://admin:SECRETPW@{V4_A}:9200/_cat/indices?v&token=SECRETDATA","extracted-results":["customers 12GB SECRETDATA"],"request":"GET /_cat/indices?v HTTP/1.1\\r\\nHost: {V4_A}:9200\\r\\n\\r\\n","response":"HTTP/1.1 200 OK\\r\\n\\r\\ngreen open customers SECRETDATA","ip":"{V4_A}","timestamp":"2024-03-18T10:11:12.123456789+01:00","curl-command":"curl -X 'GET' 'http://{V4_A}:9200/_cat/indices'","matcher-status":true}}
{{"template-id":"git-config","info":{{"name":"Git Config - Detect","severity":"medium"}},"type":"http","host":"https://db.example.org","matched-at":"https://db.example.org/.git/config","ip":"{V4_B}","timestamp":"2024-03-18T10:12:00Z","response":"[core] SECRETDATA","matcher-status":true}}
{{"template-id":"redis-default-logins","info":{{"name":"Redis - Default Logins","severity":"high"}},"type":"network","host":"{V4_C}:6379","matched-at":"{V4_C}:6379","ip":"{V4_C}","timestamp":"2024-03-18T10:13:00Z","matcher-status":false}}
{{"template-id":"ssh-weak","info":{{"name":"SSH weak","severity":"low"}},"host":"db.example.org","timestamp":"2024-03-18T10:14:00Z"}}
""".encode()  # noqa: E501

ZGRAB2 = f"""\
{{"ip":"{V4_A}","domain":"search.example.org","data":{{"http":{{"status":"success","protocol":"http","result":{{"response":{{"status_code":200,"body":"SECRETDATA","headers":{{"server":["nginx"]}},"request":{{"url":{{"scheme":"http","host":"{V4_A}:8080","path":"/"}},"method":"GET"}}}}}},"timestamp":"2024-03-18T10:11:12Z"}}}}}}
{{"ip":"{V4_B}","data":{{"ssh":{{"status":"success","protocol":"ssh","port":22,"result":{{"server_id":{{"raw":"SSH-2.0-OpenSSH_8.9 SECRETDATA"}}}},"timestamp":"2024-03-18T10:11:13Z"}},"redis":{{"status":"connection-timeout","protocol":"redis","timestamp":"2024-03-18T10:11:14Z","error":"dial tcp: i/o timeout"}}}}}}
{{"domain":"only-a-name.example.org","data":{{"http":{{"status":"success","protocol":"http"}}}}}}
""".encode()  # noqa: E501

ZMAP_CSV = f"""\
saddr,daddr,sport,dport,seqnum,acknum,window,classification,success,repeat,cooldown,timestamp_str,timestamp_ts,timestamp_us
{V4_A},10.0.0.5,443,51234,1822141066,0,65535,synack,1,0,0,2024-03-18T10:11:12.123+0000,1710756672,123000
{V4_B},10.0.0.5,443,51235,0,1822141067,0,rst,0,0,0,2024-03-18T10:11:12.456+0000,1710756672,456000
{V6_A},10.0.0.5,0,51236,1,0,0,synack,1,0,0,,,
""".encode()

ZMAP_BARE = f"saddr\n{V4_A}\n{V4_B}\n".encode()

SAMPLES: dict[str, bytes] = {
    "plain": PLAIN,
    "csv": GENERIC_CSV,
    "jsonl": JSONL,
    "masscan-json": MASSCAN_JSON,
    "masscan-list": MASSCAN_LIST,
    "nmap-xml": NMAP_XML,
    "nuclei": NUCLEI,
    "zgrab2": ZGRAB2,
    "zmap-csv": ZMAP_CSV,
}


def read(data: bytes | str, fmt: str | None = None, **kwargs: str) -> list[InputItem]:
    stream: io.BytesIO | io.StringIO = (
        io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    )
    return list(read_findings(stream, fmt=fmt, **kwargs))


def findings(items: list[InputItem]) -> list[Finding]:
    return [i for i in items if isinstance(i, Finding)]


def problems(items: list[InputItem]) -> list[tuple[int, str]]:
    return [(i.line, i.message) for i in items if isinstance(i, InputProblem)]


def no_secrets(items: list[InputItem]) -> None:
    for item in findings(items):
        blob = repr((item.text, item.hostname, item.extra))
        assert "SECRET" not in blob


class _LazyStream(io.RawIOBase):
    """A binary stream whose bytes are generated on demand, never held whole."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self._parts = parts
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            part = next(self._parts, None)
            if part is None:
                return 0
            self._buffer = part
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


# --------------------------------------------------------------------------- detection


class TestDetection:
    @pytest.mark.parametrize("fmt", FORMATS)
    def test_each_sample_is_detected(self, fmt: str) -> None:
        """Auto-detection reads every sample exactly as forcing its format does."""
        assert read(SAMPLES[fmt]) == read(SAMPLES[fmt], fmt)
        assert findings(read(SAMPLES[fmt]))

    @pytest.mark.parametrize(
        ("line", "fmt"),
        [
            (V4_A, "plain"),
            (f"[{V6_A}]:443", "plain"),
            ("ip,port,finding", "csv"),
            ('"timestamp","ip","protocol","port","hostname","tag"', "csv"),
            ("IP Address\tPort", "csv"),
            ("saddr,daddr,sport,dport", "zmap-csv"),
            ("saddr", "zmap-csv"),
            (f'{{"ip": "{V4_A}"}}', "jsonl"),
            (f'{{"ip": "{V4_A}", "ports": []}},', "masscan-json"),
            ("[", "masscan-json"),
            (f"open tcp 80 {V4_A} 1710756672", "masscan-list"),
            ('<?xml version="1.0" encoding="UTF-8"?>', "nmap-xml"),
            ('{"template-id": "x", "info": {}}', "nuclei"),
            ('{"templateID": "x", "broken', "nuclei"),
            ('{"ip": "1", "data": {"http": {"status": "success"}}}', "zgrab2"),
        ],
    )
    def test_sniff_first_line(self, line: str, fmt: str) -> None:
        """The first significant line decides the format."""
        assert sniff_format(line) == fmt

    def test_zmap_bare_list_with_header(self) -> None:
        """A one-column saddr list is a zmap list."""
        items = read(ZMAP_BARE)
        assert [str(f.ip) for f in findings(items)] == [V4_A, V4_B]
        assert not problems(items)

    def test_unknown_format_is_a_config_error(self) -> None:
        """Forcing a format that does not exist fails before anything is read."""
        with pytest.raises(ConfigError, match="unknown input format"):
            read_findings(io.BytesIO(b""), fmt="pcap")

    def test_aliases_and_auto(self) -> None:
        """Common aliases and 'auto' are accepted."""
        assert read(JSONL, "json") == read(JSONL, "jsonl")
        assert read(NMAP_XML, "nmap") == read(NMAP_XML, "auto")

    @settings(max_examples=50, deadline=1000)
    @given(fmt=st.text(max_size=16))
    def test_any_format_name_is_accepted_or_config_error(self, fmt: str) -> None:
        """A format name is either known or refused with ConfigError, never anything else."""
        try:
            items = read(PLAIN, fmt)
        except ConfigError:
            return
        _check(items)

    def test_empty_default_finding_refused(self) -> None:
        """A default finding text that cleans to nothing is a configuration error."""
        with pytest.raises(ConfigError):
            read_findings(io.BytesIO(b""), default_finding=" \x00\n ")

    def test_empty_input(self) -> None:
        """Empty or blank input yields nothing."""
        assert read(b"") == []
        assert read(b"\n\n  \n# only a comment\n") == []


# --------------------------------------------------------------------------- formats


class TestPlain:
    def test_addresses_ports_and_comments(self) -> None:
        """Addresses, ip:port and [v6]:port lines become findings with the default text."""
        found = findings(read(PLAIN))
        assert [(str(f.ip), f.port) for f in found] == [
            (V4_A, None),
            (V4_B, 9200),
            (V6_A, 443),
            (V6_B, None),
        ]
        assert {f.text for f in found} == {DEFAULT_FINDING}
        assert isinstance(found[2].ip, ipaddress.IPv6Address)

    def test_malformed_lines_reported_with_numbers(self) -> None:
        """Bad lines are reported with their line number and the rest is read."""
        bad = problems(read(PLAIN))
        assert [line for line, _ in bad] == [7, 8, 9]
        assert "not an IP address" in bad[0][1]
        assert "network" in bad[1][1]
        assert "port out of range" in bad[2][1]

    def test_default_finding_used(self) -> None:
        """The caller's default finding text labels bare addresses."""
        found = findings(read(f"{V4_A}\n".encode(), default_finding="Open Redis"))
        assert found[0].text == "Open Redis"

    def test_host_name_is_not_an_address(self) -> None:
        """A host name is refused with a hint to resolve it first."""
        assert "host name" in problems(read(b"db.example.org\n", "plain"))[0][1]

    def test_two_tokens_refused(self) -> None:
        """A line with more than one token is reported."""
        assert problems(read(f"{V4_A} {V4_B}\n".encode(), "plain"))[0][0] == 1

    def test_text_stream_and_crlf(self) -> None:
        """Text streams and CRLF line ends read the same as binary LF input."""
        crlf = PLAIN.decode().replace("\n", "\r\n")
        assert read(crlf) == read(PLAIN)
        assert read(crlf.encode()) == read(PLAIN)

    def test_utf16_with_bom(self) -> None:
        """A UTF-16 file (as Windows shells write) is decoded by its byte-order mark."""
        data = PLAIN.decode().encode("utf-16")
        assert read(data) == read(PLAIN)

    def test_undecodable_text_stream(self) -> None:
        """A text stream that fails to decode ends the read with a problem, not an exception."""
        stream = io.TextIOWrapper(io.BytesIO(f"{V4_A}\n".encode() + b"\xff" * 9000), "utf-8")
        items = list(read_findings(stream))
        assert len(items) == 1
        assert "could not be read" in problems(items)[0][1]

    def test_utf8_bom(self) -> None:
        """A UTF-8 byte-order mark is ignored."""
        assert read(b"\xef\xbb\xbf" + PLAIN) == read(PLAIN)


class TestCsv:
    def test_generic_columns(self) -> None:
        """ip, port, finding, hostname and observed_at map to the finding; others go to extra."""
        items = read(GENERIC_CSV)
        found = findings(items)
        first = found[0]
        assert (str(first.ip), first.port, first.hostname) == (V4_A, 9200, "search.example.org")
        assert first.text == "Elasticsearch without authentication"
        assert first.observed_at == datetime(2024, 3, 18, 10, 11, 12, tzinfo=UTC)
        assert first.extra == (("ticket", "T-1"),)
        assert found[1].text == DEFAULT_FINDING and found[1].port is None
        assert found[2].text == "TLS 1.0 only, weak ciphers"
        assert found[2].observed_at == datetime.fromtimestamp(1710756672, UTC)
        assert problems(items) == [(4, "not an IP address: 'bad'")]

    def test_shadowserver_report(self) -> None:
        """Shadowserver columns: tag is the finding, the rest stays in extra."""
        found = findings(read(SHADOWSERVER_CSV))
        assert len(found) == 2
        first = found[0]
        assert first.text == "elasticsearch"
        assert first.port == 9200 and first.hostname == "search.example.org"
        assert first.observed_at == datetime(2024, 3, 18, 1, 23, 45, tzinfo=UTC)
        extra = dict(first.extra)
        assert extra["protocol"] == "tcp" and extra["asn"] == "15169"
        assert extra["version"] == "7.10.2"
        assert found[1].hostname is None

    def test_tab_separated(self) -> None:
        """A tab-separated export is read by its header's delimiter."""
        data = f"IP Address\tPort\tDescription\n{V4_A}\t22\tTelnet open\n".encode()
        found = findings(read(data))
        assert (str(found[0].ip), found[0].port, found[0].text) == (V4_A, 22, "Telnet open")

    def test_header_without_address_column(self) -> None:
        """A forced CSV whose header names no address column is one problem, nothing else."""
        assert problems(read(b"name,port\nx,80\n", "csv")) == [
            (1, "CSV header names no address column (such as ip)")
        ]

    def test_bad_port_reported_and_reading_goes_on(self) -> None:
        """A bad port in one row is reported and the next row is read."""
        data = f"ip,port\n{V4_A},http\n{V4_B},80\n".encode()
        items = read(data)
        assert problems(items) == [(2, "not a port number: 'http'")]
        assert [str(f.ip) for f in findings(items)] == [V4_B]

    def test_unterminated_quote_is_bounded(self) -> None:
        """An unterminated quoted field cannot swallow the input without limit."""
        data = f'ip,finding\n{V4_A},"open\n'.encode() + b"x" * 200_000 + f"\n{V4_B},ok\n".encode()
        items = read(data)
        assert all(isinstance(i, Finding | InputProblem) for i in items)


class TestJsonl:
    def test_objects_and_problems(self) -> None:
        """JSON Lines use the CSV keys; broken lines are reported by number."""
        items = read(JSONL)
        found = findings(items)
        assert [(str(f.ip), f.port) for f in found] == [(V4_A, 9200), (V6_B, 6379)]
        assert dict(found[0].extra) == {"ticket": "T-1", "team": "blue"}
        assert found[1].observed_at == datetime.fromtimestamp(1710756672, UTC)
        assert [line for line, _ in problems(items)] == [3, 4, 5]
        assert "not valid JSON" in problems(items)[0][1]

    def test_nested_values_not_copied(self) -> None:
        """Arrays and objects other than 'extra' are left out of the finding."""
        line = f'{{"ip": "{V4_A}", "dump": ["SECRETDATA"], "note": {{"x": "SECRETDATA"}}}}\n'
        no_secrets(read(line.encode()))

    def test_deep_nesting_refused(self) -> None:
        """JSON nested past the depth bound is a problem, not a crash."""
        for depth in (100, 100_000):
            line = f'{{"ip": "{V4_A}", "x": {"[" * depth}1{"]" * depth}}}\n'
            items = read(line.encode() + f'{{"ip": "{V4_B}"}}\n'.encode(), "jsonl")
            assert "nested deeper" in problems(items)[0][1]
            assert [str(f.ip) for f in findings(items)] == [V4_B]


class TestMasscan:
    def test_json(self) -> None:
        """-oJ records: open ports and banner services, closed ports dropped, banners never kept."""
        items = read(MASSCAN_JSON)
        found = findings(items)
        assert [(str(f.ip), f.port, f.text) for f in found] == [
            (V4_A, 9200, DEFAULT_FINDING),
            (V4_B, 80, "http service on 80/tcp"),
            (V6_A, 27017, DEFAULT_FINDING),
        ]
        assert found[0].observed_at == datetime.fromtimestamp(1710756672, UTC)
        assert not problems(items)
        no_secrets(items)

    def test_json_old_trailer_and_bad_record(self) -> None:
        """The old '{finished: 1}' trailer is ignored; a record without ports is reported."""
        data = (
            f'[\n{{"ip": "{V4_A}"}},\n'
            f'{{"ip": "{V4_B}", "ports": [{{"port": 1, "status": "open"}}]}},\n'
            "{finished: 1}\n]\n"
        )
        items = read(data.encode())
        assert problems(items) == [(2, "no ports list in masscan record")]
        assert [str(f.ip) for f in findings(items)] == [V4_B]

    def test_list(self) -> None:
        """-oL lines: open and banner lines become findings, closed lines are dropped."""
        items = read(MASSCAN_LIST)
        found = findings(items)
        assert [(str(f.ip), f.port, f.text) for f in found] == [
            (V4_A, 9200, DEFAULT_FINDING),
            (V6_A, 27017, DEFAULT_FINDING),
            (V4_B, 80, "http service on 80/tcp"),
        ]
        assert problems(items) == [(6, "not an IP address: '999.1.2.3'")]
        no_secrets(items)


class TestNmap:
    def test_open_ports_described(self) -> None:
        """One finding per open port, describing the service, never the script output."""
        items = read(NMAP_XML)
        found = findings(items)
        assert [(str(f.ip), f.port, f.text) for f in found] == [
            (V4_A, 9200, "Elasticsearch REST API 7.10.2 (http) on 9200/tcp open"),
            (V4_A, 443, "nginx (ssl/http) on 443/tcp open"),
            (V6_B, 161, "snmp on 161/udp open"),
            (V6_B, 6379, "port 6379/tcp open"),
        ]
        assert found[0].hostname == "search.example.org"
        assert found[2].hostname is None
        assert found[0].observed_at == datetime.fromtimestamp(1710756673, UTC)
        assert dict(found[0].extra)["product"] == "Elasticsearch REST API"
        no_secrets(items)

    def test_bad_address_reported_with_line(self) -> None:
        """A host with an invalid address is reported at its line and the report goes on."""
        lines = NMAP_XML.decode().splitlines()
        bad_line = next(n for n, text in enumerate(lines, 1) if "999.1.1.1" in text)
        assert problems(read(NMAP_XML)) == [
            (bad_line, "not an IP address: '999.1.1.1'"),
            (bad_line + 2, "host with open ports but no IPv4/IPv6 address"),
        ]

    def test_truncated_report_keeps_earlier_hosts(self) -> None:
        """An interrupted scan's report yields the hosts it finished, then one problem."""
        cut = NMAP_XML[: NMAP_XML.index(b'<host starttime="1710756680"')]
        items = read(cut)
        assert len(findings(items)) == 2
        ((line, message),) = problems(items)
        assert "malformed XML" in message and line == cut.count(b"\n")

    def test_billion_laughs_refused(self) -> None:
        """An entity-expansion bomb is refused at once, without memory growth."""
        entities = "\n".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
        bomb = (
            '<?xml version="1.0"?>\n<!DOCTYPE nmaprun [\n<!ENTITY lol0 "lol">\n'
            f"{entities}\n]>\n<nmaprun>&lol9;</nmaprun>\n"
        )
        tracemalloc.start()
        try:
            started = time.monotonic()
            items = read(bomb.encode())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.monotonic() - started < 1
        assert peak < 5_000_000
        assert findings(items) == []
        assert "DTD or entities" in problems(items)[0][1]

    def test_external_entity_refused(self) -> None:
        """A DTD pointing outside the document is refused."""
        xxe = b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun SYSTEM "file:///etc/passwd">\n<nmaprun/>\n'
        assert "DTD or entities" in problems(read(xxe))[0][1]

    def test_other_xml_refused(self) -> None:
        """An XML document that is not an nmap report stops with one problem."""
        assert problems(read(b"<html><body/></html>\n")) == [
            (1, "not an nmap XML report (root element 'html')")
        ]

    def test_deep_nesting_stops(self) -> None:
        """Elements nested past the depth bound stop the read with a problem."""
        data = b"<nmaprun>\n" + b"<a>\n" * 200 + b"</a>\n" * 200 + b"</nmaprun>\n"
        assert "nested too deeply" in problems(read(data))[0][1]

    def test_large_report_in_flat_memory(self) -> None:
        """Elements are dropped once read: memory does not grow with the number of hosts."""
        hosts = 400

        def parts() -> Iterator[bytes]:
            yield b'<?xml version="1.0"?>\n<!DOCTYPE nmaprun>\n<nmaprun start="1710756672">\n'
            for n in range(hosts):
                yield (
                    f'<host><address addr="{V4_A}" addrtype="ipv4"/>\n<ports>'
                    f'<port protocol="tcp" portid="{1 + n}"><state state="open"/>'
                    f'<script id="banner" output="{"A" * 4000}"/></port>\n</ports>\n</host>\n'
                ).encode()
            yield b"</nmaprun>\n"

        tracemalloc.start()
        try:
            stream = io.BufferedReader(_LazyStream(parts()))
            count = sum(isinstance(i, Finding) for i in read_findings(stream))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == hosts
        assert peak < 600_000  # holding the report would take over 1.6 MB

    def test_address_after_ports(self) -> None:
        """Ports listed before the host's address are held and reported once it is known."""
        data = (
            "<nmaprun>\n<host>\n<ports>\n"
            '<port protocol="tcp" portid="23"><state state="open"/>'
            '<service name="telnet"/></port>\n'
            f'</ports>\n<address addr="{V4_C}" addrtype="ipv4"/>\n</host>\n</nmaprun>\n'
        )
        found = findings(read(data.encode()))
        assert [(str(f.ip), f.port, f.text) for f in found] == [(V4_C, 23, "telnet on 23/tcp open")]

    def test_long_script_line_skipped(self) -> None:
        """A script-output line over the line bound is skipped; the report still parses."""
        lines = NMAP_XML.split(b"\n")
        at = next(n for n, text in enumerate(lines) if b'portid="9200"' in text)
        huge = b'<port protocol="tcp" portid="1"><script output="' + b"A" * (MAX_LINE + 10)
        huge += b'"/></port>'
        lines.insert(at, huge)
        items = read(b"\n".join(lines))
        assert problems(items)[0] == (at + 1, f"line longer than {MAX_LINE} characters; skipped")
        assert len(findings(items)) == 4


class TestNuclei:
    def test_matches(self) -> None:
        """Matches become findings naming the template; bodies and credentials never copied."""
        items = read(NUCLEI)
        found = findings(items)
        assert [(str(f.ip), f.port, f.text) for f in found] == [
            (
                V4_A,
                9200,
                "nuclei: Elasticsearch - Unauthenticated Access [high] (elasticsearch-unauth)",
            ),
            (V4_B, 443, "nuclei: Git Config - Detect [medium] (git-config)"),
        ]
        assert dict(found[0].extra)["matched-at"] == f"http://{V4_A}:9200/_cat/indices"
        assert found[1].hostname == "db.example.org"
        assert found[0].observed_at == datetime(2024, 3, 18, 9, 11, 12, 123456, tzinfo=UTC)
        no_secrets(items)
        assert "PW" not in repr(found)

    def test_name_without_address_reported(self) -> None:
        """A match on a host name with no ip field is reported, not guessed."""
        assert problems(read(NUCLEI)) == [
            (4, "a host name, not an IP address: 'db.example.org' (resolve it first)")
        ]


class TestZgrab2:
    def test_successful_modules(self) -> None:
        """Each module that answered is one finding; results are never copied."""
        items = read(ZGRAB2)
        found = findings(items)
        assert [(str(f.ip), f.port, f.text) for f in found] == [
            (V4_A, 8080, "http responded (status success)"),
            (V4_B, 22, "ssh responded (status success)"),
        ]
        assert found[0].hostname == "search.example.org"
        assert dict(found[1].extra) == {"module": "ssh", "protocol": "ssh"}
        assert problems(items) == [(3, "no IP address")]
        no_secrets(items)


class TestZmap:
    def test_csv(self) -> None:
        """saddr/sport are the target; failed responses are dropped; bad ports reported."""
        items = read(ZMAP_CSV)
        found = findings(items)
        assert [(str(f.ip), f.port) for f in found] == [(V4_A, 443)]
        assert found[0].observed_at == datetime(2024, 3, 18, 10, 11, 12, 123000, tzinfo=UTC)
        assert problems(items) == [(4, "port out of range: 0")]

    def test_bare_list_without_header(self) -> None:
        """Forced zmap-csv reads a headerless address list."""
        found = findings(read(f"{V4_A}\n{V4_B}\n".encode(), "zmap-csv"))
        assert [str(f.ip) for f in found] == [V4_A, V4_B]


# --------------------------------------------------------------------------- bounds


class TestBounds:
    @pytest.mark.parametrize("fmt", ["plain", "csv", "jsonl", "masscan-list", "nuclei"])
    def test_huge_line_skipped_without_being_held(self, fmt: str) -> None:
        """A line over the bound is one problem; the lines around it are read; it is never held."""
        head = SAMPLES[fmt].split(b"\n")[:2]

        def parts() -> Iterator[bytes]:
            yield b"\n".join(head) + b"\n"
            for _ in range(80):  # 5 MiB on one line
                yield b"x" * 65536
            yield b"\n" + head[-1] + b"\n"

        tracemalloc.start()
        try:
            items = list(read_findings(io.BufferedReader(_LazyStream(parts())), fmt=fmt))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 3 * MAX_LINE
        assert (3, f"line longer than {MAX_LINE} characters; skipped") in problems(items)
        before = findings(read(b"\n".join(head) + b"\n", fmt))
        assert findings(items) == [*before, before[-1]]

    def test_line_at_the_bound_is_read(self) -> None:
        """A line of exactly the bound is still read."""
        line = V4_A + " " * (MAX_LINE - len(V4_A))
        assert findings(read(f"{line}\n{V4_B}\n".encode(), "plain"))[0].port is None
        assert not problems(read(f"{line}\n".encode(), "plain"))

    def test_finding_text_cleaned_and_cut(self) -> None:
        """Control characters are removed and a long text is cut, never copied whole."""
        text = "Open\x1b[31m DB\r\nSubject:\u202e evil " + "SECRETDATA " * 1000
        row = json.dumps({"ip": V4_A, "finding": text}) + "\n"
        (found,) = findings(read(row.encode(), "jsonl"))
        assert len(found.text) <= MAX_TEXT
        assert found.text.endswith("…")
        assert found.text.startswith("Open [31m DB Subject: evil")
        assert all(ch.isprintable() for ch in found.text)

    def test_plain_input_in_bounded_memory(self, tmp_path: Path) -> None:
        """200,000 lines stream through with a small, flat memory peak."""
        count = 200_000
        source = tmp_path / "targets.txt"
        source.write_bytes(
            b"".join(
                b"%d.%d.%d.7:%d\n" % (1 + n // 65536, n // 256 % 256, n % 256, 1 + n % 65535)
                for n in range(count)
            )
        )
        tracemalloc.start()
        try:
            with source.open("rb") as stream:
                kinds = Counter(type(item) for item in read_findings(stream))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert kinds == {Finding: count}
        assert peak < 10_000_000


# --------------------------------------------------------------------------- properties


def _sample_lines() -> list[str]:
    lines: list[str] = []
    for data in SAMPLES.values():
        lines.extend(data.decode().splitlines())
    return lines


_LINES = _sample_lines()
_mutated_line = st.one_of(
    st.sampled_from(_LINES),
    st.builds(
        lambda line, cut, junk: line[:cut] + junk + line[cut:],
        st.sampled_from(_LINES),
        st.integers(0, 300),
        st.text(max_size=8),
    ),
    st.text(max_size=80),
)
_KEYS = [
    "ip", "host", "port", "ports", "proto", "status", "service", "name", "finding", "hostname",
    "timestamp", "observed_at", "extra", "template-id", "info", "severity", "matched-at",
    "matcher-status", "data", "http", "result", "domain", "response", "request", "url",
]  # fmt: skip
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.sampled_from([V4_A, V6_A, "9200", "open", "success", "2024-03-18T10:11:12Z"])
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner),
    max_leaves=8,
)
_json_lines = st.lists(
    st.dictionaries(st.sampled_from(_KEYS), _json_values, max_size=6).map(json.dumps),
    max_size=6,
).map(lambda ls: "\n".join(ls).encode())
_documents = st.one_of(
    st.binary(max_size=2000),
    st.lists(_mutated_line, max_size=30).map(lambda ls: "\n".join(ls).encode()),
)


def _check(items: list[InputItem]) -> None:
    for item in items:
        assert isinstance(item, Finding | InputProblem)
        if isinstance(item, Finding):
            assert 0 < len(item.text) <= MAX_TEXT and item.text.isprintable()
            assert item.port is None or 1 <= item.port <= 65535
            assert len(item.extra) <= 32
        else:
            assert item.line >= 1 and item.message


class TestProperties:
    @pytest.mark.parametrize("fmt", [None, *FORMATS])
    @settings(
        max_examples=30,
        deadline=2000,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=_documents)
    def test_arbitrary_input_never_raises(self, fmt: str | None, data: bytes) -> None:
        """Whatever the bytes, reading yields only findings and problems, quickly."""
        started = time.monotonic()
        _check(read(data, fmt))
        assert time.monotonic() - started < 1.5

    @pytest.mark.parametrize("fmt", [None, "jsonl", "masscan-json", "nuclei", "zgrab2"])
    @settings(
        max_examples=25,
        deadline=2000,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=_json_lines)
    def test_arbitrary_json_never_raises(self, fmt: str | None, data: bytes) -> None:
        """JSON records with any value types in the known keys never break the reader."""
        _check(read(data, fmt))


# --------------------------------------------------------------------------- corpus


@pytest.fixture
def scanner_dir(corpus_dir: Path) -> Path:
    folder = corpus_dir / "scanners"
    if not folder.is_dir():
        pytest.skip("no captured scanner outputs in the corpus")
    return folder


@pytest.mark.corpus
class TestCorpus:
    def test_captured_outputs_read(self, scanner_dir: Path) -> None:
        """Every captured scanner output reads through to findings without an exception."""
        files = sorted(p for p in scanner_dir.rglob("*") if p.is_file())
        if not files:
            pytest.skip("the scanners folder is empty")
        for path in files:
            with path.open("rb") as stream:
                items = list(read_findings(stream))
            _check(items)
            assert findings(items), path.name


# --------------------------------------------------------------------------- host hints, services


def _zgrab_tls(names: list[str], domain: str | None = None) -> str:
    parsed = {
        "subject": {"common_name": [names[0]]},
        "extensions": {"subject_alt_name": {"dns_names": names}},
    }
    record: dict[str, object] = {
        "ip": V4_A,
        "data": {
            "http": {
                "status": "success",
                "protocol": "http",
                "result": {
                    "response": {
                        "request": {
                            "host": "shop.example.org:8443",
                            "tls_log": {
                                "handshake_log": {
                                    "server_certificates": {"certificate": {"parsed": parsed}}
                                }
                            },
                        }
                    }
                },
            },
            "mongodb": {"status": "success", "protocol": "mongodb", "port": 27017},
        },
    }
    if domain:
        record["domain"] = domain
    return json.dumps(record) + "\n"


class TestHostHints:
    def test_nmap_names_keep_their_kind(self) -> None:
        """nmap's user-given and PTR names become hints, each saying which it was."""
        first = findings(read(NMAP_XML, "nmap"))[0]
        assert [(h.name, h.source) for h in first.hints] == [
            ("ord08s08-in-f5.1e100.net", "nmap hostname (PTR)"),
            ("search.example.org", "nmap hostname (user)"),
        ]

    def test_zgrab2_certificate_names_and_http_host(self) -> None:
        """A zgrab2 record's domain, HTTP host and certificate names are hints with provenance."""
        found = findings(read(_zgrab_tls(["www.example.org", "*.cdn.example.org"], "example.org")))
        hints = {(h.name, h.source) for h in found[0].hints}
        assert hints == {
            ("example.org", "zgrab2 domain"),
            ("shop.example.org", "http host"),
            ("www.example.org", "tls certificate"),
            ("cdn.example.org", "tls certificate"),
        }

    def test_ten_thousand_name_certificate_is_bounded(self) -> None:
        """A certificate with 10,000 names yields a bounded number of hints, and reading goes on."""
        names = [f"h{i}.example.org" for i in range(10_000)]
        found = findings(read(_zgrab_tls(names)))
        assert 0 < len(found[0].hints) <= 64
        assert len(found) == 2

    def test_csv_hostname_column_is_a_hint(self) -> None:
        """A CSV hostname column is a hint named after its column."""
        found = findings(read(f"ip,port,hostname\n{V4_A},9200,db.example.org\n", "csv"))
        assert [(h.name, h.source) for h in found[0].hints] == [
            ("db.example.org", "input hostname")
        ]

    def test_csv_hostname_with_control_characters_is_a_bad_line(self) -> None:
        """Control characters in a host name make the line bad, reported with its number."""
        data = (
            f"ip,port,hostname\n{V4_A},9200,ok.example.org\n{V4_B},9200,evil\x1b[2J.example.org\n"
        )
        items = read(data, "csv")
        assert len(findings(items)) == 1
        ((line, reason),) = problems(items)
        assert line == 3 and "control characters" in reason
        assert "\x1b" not in reason

    def test_hostile_names_are_not_hints(self) -> None:
        """Over-long names and names with spaces or markup are never hints."""
        record = {"ip": V4_A, "hostname": "a" * 1_000_000, "fqdn": "<script>.example.org"}
        found = findings(read(json.dumps(record) + "\n", "jsonl"))
        assert found[0].hints == ()


class TestService:
    def test_nmap_service_or_product(self) -> None:
        """nmap's service name, or its product where the name is only a transport."""
        services = {f.port: f.service for f in findings(read(NMAP_XML, "nmap"))}
        assert services[9200] == "elasticsearch rest api"
        assert services[443] == "nginx"
        assert services[161] == "snmp"
        assert services[6379] is None

    def test_zgrab2_module(self) -> None:
        """A zgrab2 module's protocol names the service; plain http names none."""
        found = findings(read(_zgrab_tls(["www.example.org"])))
        assert [f.service for f in found] == [None, "mongodb"]

    def test_nuclei_tags(self) -> None:
        """The first nuclei tag that names a product is the service."""
        record = {
            "template-id": "elasticsearch-unauth",
            "info": {"name": "Elasticsearch - Unauth", "severity": "high",
                     "tags": ["misconfig", "elasticsearch", "unauth"]},
            "host": "search.example.org:9200",
            "ip": V4_A,
            "port": "9200",
        }  # fmt: skip
        found = findings(read(json.dumps(record) + "\n", "nuclei"))
        assert found[0].service == "elasticsearch"
        assert [(h.name, h.source) for h in found[0].hints] == [
            ("search.example.org", "nuclei host")
        ]

    def test_csv_service_column(self) -> None:
        """A service column names the service."""
        found = findings(read(f"ip,port,service\n{V4_A},6379,Redis\n", "csv"))
        assert found[0].service == "redis"


@pytest.mark.corpus
class TestCorpusServices:
    def test_captured_nmap_names_and_services(self, scanner_dir: Path) -> None:
        """The captured nmap report gives user and PTR hints and a service per open port."""
        with (scanner_dir / "nmap-oX.xml").open("rb") as stream:
            found = findings(list(read_findings(stream)))
        hints = {(h.name, h.source) for f in found for h in f.hints}
        assert ("joaquinlp.me", "nmap hostname (user)") in hints
        assert ("mocha2005.mochahost.com", "nmap hostname (PTR)") in hints
        assert {"ftp", "smtp", "pop3"} <= {f.service for f in found}

    def test_captured_zgrab2_service(self, scanner_dir: Path) -> None:
        """The captured zgrab2 AMQP answer names its protocol as the service."""
        with (scanner_dir / "zgrab2-amqp091.json").open("rb") as stream:
            found = findings(list(read_findings(stream)))
        assert [f.service for f in found] == ["amqp091"]
