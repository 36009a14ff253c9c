"""WHOIS port 43: the registries' real answers replayed from loopback servers, referrals,
misbehaving servers, charsets, and the per-registry parsers.

Every registry server name is mapped to a loopback ``WhoisServer``; the resolver points at a
dead loopback port, so a name that slipped past the overrides fails fast instead of leaving
the machine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from notifier import net
from notifier.config import Settings
from notifier.errors import SourceProtocolError, SourceTimeout, SourceUnavailable
from notifier.models import Network, Role, SourceReport, Target
from notifier.sandbox.whois import WhoisServer
from notifier.sources import LookupContext, Query, whois

REGISTRY_SERVERS = (
    "whois.iana.org",
    "whois.arin.net",
    "whois.ripe.net",
    "whois.apnic.net",
    "whois.lacnic.net",
    "whois.afrinic.net",
    "whois.nic.ad.jp",
    "whois.nic.or.kr",
    "whois.twnic.net.tw",
    "whois.cnnic.cn",
    "whois.idnic.net",
    "whois.registro.br",
)


class Loopback:
    """Loopback WHOIS servers standing in for the registries (and any ISP server a test adds)."""

    def __init__(self) -> None:
        self.servers: dict[str, WhoisServer] = {n: WhoisServer() for n in REGISTRY_SERVERS}
        self._clients: list[Any] = []

    def __getitem__(self, name: str) -> WhoisServer:
        return self.servers[name]

    async def start(self) -> None:
        for server in self.servers.values():
            await server.start()

    async def add(self, name: str, server: WhoisServer | None = None) -> WhoisServer:
        server = server or WhoisServer()
        await server.start()
        self.servers[name] = server
        return server

    def settings(self, **whois_settings: Any) -> Settings:
        whois_settings.setdefault("timeout", 2.0)
        return Settings.from_mapping(
            {
                "whois": {
                    "servers": {n: s.endpoint for n, s in self.servers.items()},
                    **whois_settings,
                },
                "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.3},
            }
        )

    def context(self, **whois_settings: Any) -> LookupContext:
        settings = self.settings(**whois_settings)
        resolver = net.make_resolver(settings.dns)
        http = net.make_http_client(settings.http, resolver, user_agent="notifier-tests")
        self._clients.append(http)
        return LookupContext(
            settings=settings, resolver=resolver, http=http, limiter=net.RateLimiter(1000.0)
        )

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
        for server in self.servers.values():
            await server.stop()


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    internet = Loopback()
    await internet.start()
    try:
        yield internet
    finally:
        await internet.close()


def ask(ip: str, registry: str | None = None) -> Query:
    network = Network(registry=registry) if registry else None
    return Query(target=Target(ipaddress.ip_address(ip)), network=network)


def addresses(report: SourceReport | whois.WhoisRecord) -> list[str]:
    return [c.address for c in report.contacts]


def corpus_file(corpus_dir: Path, name: str) -> bytes:
    return (corpus_dir / "whois" / "ip" / name).read_bytes()


# --------------------------------------------------------------------------- samples
# The corpus has no TWNIC, CNNIC, IDNIC, registro.br, KRNIC-in-Korean or JPNIC contact-record
# answers, nor ARIN reallocations with referrals; these follow the registries' layouts.

ARIN_REALLOCATED = """\
#
# ARIN WHOIS data and services are subject to the Terms of Use
# available at: https://www.arin.net/resources/registry/whois/tou/
#

NetRange:       74.125.0.0 - 74.125.255.255
CIDR:           74.125.0.0/16
NetName:        TRANSIT-ISP
NetHandle:      NET-74-125-0-0-1
Parent:         NET74 (NET-74-0-0-0-0)
NetType:        Direct Allocation
OriginAS:       AS64500
Organization:   Transit ISP Example (TIE-1)
RegDate:        2007-03-13
Updated:        2012-02-24
Ref:            https://rdap.arin.net/registry/ip/74.125.0.0

ReferralServer:  whois://whois.transit-isp.example

OrgName:        Transit ISP Example
OrgId:          TIE-1
Country:        US

OrgAbuseHandle: ABUSE1-ARIN
OrgAbuseName:   Abuse Desk
OrgAbuseEmail:  abuse@transit-isp.example

OrgTechHandle:  NOC1-ARIN
OrgTechName:    Network Operations
OrgTechEmail:   noc@transit-isp.example


NetRange:       74.125.225.0 - 74.125.225.255
CIDR:           74.125.225.0/24
NetName:        DOWNSTREAM-NET
NetHandle:      NET-74-125-225-0-1
Parent:         TRANSIT-ISP (NET-74-125-0-0-1)
NetType:        Reallocated
Organization:   Downstream ISP Example (DIE-2)

ReferralServer:  whois://whois.downstream-isp.example:4343

OrgName:        Downstream ISP Example
OrgId:          DIE-2
Country:        CA

OrgTechHandle:  TECH2-ARIN
OrgTechEmail:   tech@downstream-isp.example
"""

ARIN_CUSTOMER = """\
NetRange:       74.125.0.0 - 74.125.255.255
CIDR:           74.125.0.0/16
NetName:        TRANSIT-ISP
NetHandle:      NET-74-125-0-0-1
NetType:        Direct Allocation
Organization:   Transit ISP Example (TIE-1)

OrgName:        Transit ISP Example
OrgId:          TIE-1
Country:        US

OrgAbuseHandle: ABUSE1-ARIN
OrgAbuseEmail:  abuse@transit-isp.example

OrgNOCHandle:   NOC1-ARIN
OrgNOCEmail:    noc@transit-isp.example


NetRange:       74.125.225.0 - 74.125.225.63
CIDR:           74.125.225.0/26
NetName:        CUST-EXAMPLE
NetHandle:      NET-74-125-225-0-2
Parent:         TRANSIT-ISP (NET-74-125-0-0-1)
NetType:        Reassigned
Customer:       Customer Example (C01234567)

CustName:       Customer Example
Country:        US
"""

ARIN_REALLOCATED_WITH_ABUSE = ARIN_CUSTOMER.replace(
    "CustName:       Customer Example\nCountry:        US\n",
    "OrgName:        Downstream ISP Example\nOrgId:          DIE-2\nCountry:        CA\n\n"
    "OrgAbuseHandle: ABUSE2-ARIN\nOrgAbuseEmail:  abuse@downstream-isp.example\n",
)

ARIN_TO_RIPE = """\
NetRange:       62.0.0.0 - 62.255.255.255
CIDR:           62.0.0.0/8
NetName:        RIPE-CIDR-62
NetHandle:      NET-62-0-0-0-1
NetType:        Allocated to RIPE NCC
Organization:   RIPE Network Coordination Centre (RIPE)

OrgName:        RIPE Network Coordination Centre
OrgId:          RIPE
Country:        NL

OrgAbuseHandle: ABUSE3850-ARIN
OrgAbuseEmail:  abuse@ripe.net
"""

DOWNSTREAM_RPSL = """\
% Downstream ISP Example whois server

inetnum:        74.125.225.0 - 74.125.225.255
netname:        DOWNSTREAM-CUSTOMERS
descr:          Downstream ISP Example customer pool
country:        CA
abuse-c:        DIE-ABUSE
source:         DOWNSTREAM

role:           Downstream Abuse Team
nic-hdl:        DIE-ABUSE
abuse-mailbox:  abuse@downstream-isp.example
"""

IANA_TO_RIPE = """\
% IANA WHOIS server
% for more information on IANA, visit http://www.iana.org
% This query returned 1 object

refer:        whois.ripe.net

inetnum:      62.0.0.0 - 62.255.255.255
organisation: RIPE NCC
status:       ALLOCATED

whois:        whois.ripe.net

changed:      1997-04
source:       IANA
"""

APNIC_STUB = """\
% [whois.apnic.net]
% Whois data copyright terms    http://www.apnic.net/db/dbcopyright.html

% Information related to '62.0.0.0 - 62.255.255.255'

inetnum:        62.0.0.0 - 62.255.255.255
netname:        RIPE-CIDR-BLOCK
descr:          Transferred to the RIPE NCC region
country:        AU
admin-c:        HM20-AP
tech-c:         HM20-AP
mnt-by:         APNIC-STUB
status:         ALLOCATED PORTABLE
source:         APNIC

role:           APNIC Hostmaster
e-mail:         helpdesk@apnic.net
nic-hdl:        HM20-AP
source:         APNIC
"""

KRNIC_BORANET = """\
query : 210.107.73.73


# KOREAN(UTF8)

조회하신 IPv4주소는 한국인터넷진흥원으로부터 아래의 관리대행자에게
할당되었으며, 할당 정보는 다음과 같습니다.

[ 네트워크 할당 정보 ]
IPv4 주소          : 210.106.224.0 - 210.107.127.255 (/12+/13)
기관명             : 주식회사 엘지유플러스
서비스명           : BORANET
주소               : 서울특별시 용산구 한강대로 32
우편번호           : 04389
할당일자           : 20021025

이름               : IP주소 담당자
전화번호           : +82-2-0000-0000
E-Mail             : ip-manager@boranet.example

[ 네트워크 어뷰즈 담당자 ]
이름               : 어뷰즈 담당자
전화번호           : +82-2-0000-0001
E-Mail             : abuse@boranet.example
"""

JPNIC_BANNER = """\
[ JPNIC database provides information regarding IP address and ASN. Its use   ]
[ is restricted to network administration purposes. For further information,  ]
[ use 'whois -h whois.nic.ad.jp help'. To only display English output,        ]
[ add '/e' at the end of command, e.g. 'whois -h whois.nic.ad.jp xxx/e'.      ]

"""

JPNIC_CONTACT = (
    JPNIC_BANNER
    + """\
Contact Information:
a. [JPNIC Handle]               MY22537JP
c. [Last, First]                Yamada, Manabu
d. [E-Mail]                     ip-admin@osaka-u.example
g. [Organization]               Osaka University
l. [Division]                   Cybermedia Center
n. [Title]
o. [TEL]                        06-0000-0000
p. [FAX]
y. [Reply Mail]
[Last Update]                   2014/04/01 10:00:00(JST)
"""
)

JPNIC_IIJ = (
    JPNIC_BANNER
    + """\
Network Information:
a. [Network Number]             2001:240:10c::/48
b. [Network Name]               IIJ-PRJNET
g. [Organization]               Internet Initiative Japan Inc.
m. [Administrative Contact]     IK0000JP
n. [Technical Contact]          IK0000JP
[Assigned Date]                 2007/03/16
[Last Update]                   2015/01/13 10:00:00(JST)

Less Specific Info.
----------
Internet Initiative Japan Inc.     IIJ-NET6  2001:240::/32
"""
)

JPNIC_IIJ_CONTACT = JPNIC_CONTACT.replace("MY22537JP", "IK0000JP").replace(
    "ip-admin@osaka-u.example", "ip-admin@iij.example"
)

JPNIC_JAPANESE = """\
Network Information: [ネットワーク情報]
a. [IPネットワークアドレス]     133.1.0.0/16
b. [ネットワーク名]             OSAKAU-NET
f. [組織名]                     大阪大学
m. [管理者連絡窓口]             MY22537JP
n. [技術連絡担当者]             MY22537JP
"""

TWNIC_NETNAME = """\
   Netname: HINET-NET
   Netblock: 168.95.0.0/16

   Registrant:
      Chunghwa Telecom Data Communication Business Group
      No. 21, Sec. 1, Xinyi Rd., Taipei
      TW

   Administrator contact:
      Network Administrator
      network-adm@hinet.example
      +886-2-0000-0000

   Technical contact:
      Network Administrator
      network-adm@hinet.example
      +886-2-0000-0000

   Abuse contact:
      Abuse Desk
      abuse@hinet.example
"""

TWNIC_CUSTOMER = """\
   Netname: HINET-NET
   Netblock: 168.95.0.0/16

   Administrator contact:
      network-adm@hinet.example

   Netname: EXAMPLE-UNIVERSITY-NET
   Netblock: 168.95.10.0 - 168.95.10.255

   Registrant:
      Example University Computer Center
      TW

   Technical contact:
      Campus Network Team
      netadm@university.example
"""

TWNIC_RPSL = """\
inetnum:        168.95.0.0 - 168.95.255.255
netname:        HINET-NET
descr:          Chunghwa Telecom Co., Ltd.
country:        TW
admin-c:        HN27-TW
tech-c:         HN28-TW
mnt-by:         MAINT-TW-TWNIC
mnt-irt:        IRT-HINET-TW
status:         ALLOCATED PORTABLE
source:         TWNIC

irt:            IRT-TWNIC-AP
address:        Taipei, Taiwan, 100
e-mail:         hostmaster@twnic.net.tw
abuse-mailbox:  hostmaster@twnic.net.tw
source:         TWNIC

irt:            IRT-HINET-TW
e-mail:         network-adm@hinet.example
abuse-mailbox:  abuse@hinet.example
source:         TWNIC
"""

CNNIC_RPSL = """\
% [whois.cnnic.cn]

inetnum:        159.226.0.0 - 159.226.255.255
netname:        CSTNET
descr:          Computer Network Information Center, Chinese Academy of Sciences
country:        CN
admin-c:        CSTN1-CN
tech-c:         CSTN1-CN
mnt-by:         MAINT-CNNIC-AP
mnt-irt:        IRT-CSTNET-CN
status:         ALLOCATED PORTABLE
source:         CNNIC

irt:            IRT-CNNIC-CN
e-mail:         ipas@cnnic.cn
abuse-mailbox:  ipas@cnnic.cn
source:         CNNIC

irt:            IRT-CSTNET-CN
address:        4 Zhongguancun South 4th Street, Beijing
e-mail:         noc@cstnet.example
abuse-mailbox:  abuse@cstnet.example
admin-c:        CSTN1-CN
tech-c:         CSTN1-CN
source:         CNNIC

role:           CSTNET Network Operation Center
nic-hdl:        CSTN1-CN
e-mail:         ipadmin@cstnet.example
source:         CNNIC
"""

IDNIC_RPSL = """\
% [whois.idnic.net]

inetnum:        103.10.0.0 - 103.10.3.255
netname:        CONTOH-NET-ID
descr:          PT Contoh Jaringan Nusantara
country:        ID
admin-c:        CJN1-ID
tech-c:         CJN1-ID
mnt-by:         MNT-APJII-ID
mnt-irt:        IRT-CONTOH-ID
status:         ALLOCATED PORTABLE
source:         ID-NIC

irt:            IRT-IDNIC-ID
e-mail:         hostmaster@idnic.net
abuse-mailbox:  hostmaster@idnic.net
source:         ID-NIC

irt:            IRT-CONTOH-ID
e-mail:         noc@contoh.example
abuse-mailbox:  abuse@contoh.example
source:         ID-NIC

role:           Contoh Jaringan NOC
nic-hdl:        CJN1-ID
e-mail:         noc@contoh.example
source:         ID-NIC
"""

APNIC_ABUSE_C = """\
% [whois.apnic.net]

% Abuse contact for '203.0.0.0 - 203.0.0.255' is 'abuse@isp-au.example'

inetnum:        1.1.1.0 - 1.1.1.255
netname:        EXAMPLE-AU
descr:          Example ISP
country:        AU
abuse-c:        AE1-AP
tech-c:         TE1-AP
mnt-by:         MAINT-EXAMPLE
source:         APNIC

role:           ABUSE EXAMPLEAU
nic-hdl:        AE1-AP
phone:          +000000000
country:        ZZ
e-mail:         report@isp-au.example
abuse-mailbox:  abuse@isp-au.example
source:         APNIC

role:           Example Tech
nic-hdl:        TE1-AP
e-mail:         noc@isp-au.example
source:         APNIC
"""

REGISTRO_BR = """\
% Copyright (c) Nic.br
%  The use of the data below is only permitted as described in
%  full by the terms of use at https://registro.br/termo/en.html ,
%  being prohibited its distribution, commercialization or
%  reproduction, in particular, to use it for advertising or
%  any similar purpose.
%  2024-05-02T10:11:12-03:00 - IP: 127.0.0.1

inetnum:     177.10/16
aut-num:     AS64500
abuse-c:     ABX7
owner:       Provedor Exemplo Telecomunicações Ltda
ownerid:     12.345.678/0001-90
responsible: Fulano de Tal
country:     BR
owner-c:     FUT12
tech-c:      FUT12
inetrev:     177.10/16
nserver:     ns1.provedor.example
nsstat:      20240501 AA
created:     20100503
changed:     20230214

nic-hdl-br:  ABX7
person:      Grupo de Abuso Provedor Exemplo
e-mail:      abuse@provedor.example
country:     BR
created:     20100503
changed:     20230214

nic-hdl-br:  FUT12
person:      Fulano de Tal
e-mail:      fulano@provedor.example
country:     BR
created:     20100503
changed:     20230214
"""

LACNIC_PLACEHOLDER = """\
% Joint Whois - whois.lacnic.net
%  This server accepts single ASN, IPv4 or IPv6 queries

% LACNIC resource: whois.lacnic.net

inetnum:     200.57.128/19
status:      allocated
aut-num:     N/A
owner:       Triara.com, S.A. de C.V.
ownerid:     MX-TSCV6-LACNIC
country:     MX
owner-c:     RYT2
tech-c:      NOC9
abuse-c:     RYT2

nic-hdl:     RYT2
person:      Contact withheld
e-mail:      removed@lacnic.net
country:     MX

nic-hdl:     NOC9
person:      Network Operations
e-mail:      noc@triara.example
country:     MX
"""

RIPE_INJECTED = (
    "% Information related to '62.239.237.0 - 62.239.237.255'\n\n"
    "% Abuse contact for '62.239.237.0 - 62.239.237.255' is "
    "'abuse@evil.example\rBcc: victim@target.example'\n\n"
    "inetnum:        62.239.237.0 - 62.239.237.255\n"
    "netname:        INJECTED\n"
    "country:        GB\n"
    "abuse-c:        EVIL1-RIPE\n"
    "remarks:        send abuse to spam@evil.example\x0bBcc: victim@target.example\n"
    "source:         RIPE\n\n"
    "role:           Evil Role\n"
    "nic-hdl:        EVIL1-RIPE\n"
    "abuse-mailbox:  abuse@evil.example\rBcc: victim@target.example\n"
    "source:         RIPE\n"
)


# --------------------------------------------------------------------------- corpus replay

# file, registry as RDAP names it, target, server, query the server must see, addresses chosen
# (strongest first), network name
CORPUS = [
    (
        "ripencc-62.239.237.1.txt",
        "RIPE NCC",
        "62.239.237.1",
        "whois.ripe.net",
        "-r -B 62.239.237.1",
        ["protect@bt.com", "btcertcc@bt.com"],
        "BT-CORPORATE",
    ),
    (
        "ripencc-2a00_2381_ffff__1.txt",
        "RIPE NCC",
        "2a00:2381:ffff::1",
        "whois.ripe.net",
        "-r -B 2a00:2381:ffff::1",
        ["protect@bt.com", "abuse@bt.net"],
        "BT-WORLD-IPVSIX-LAUNCH",
    ),
    (
        "afrinic-196.11.240.215.txt",
        "AFRINIC",
        "196.11.240.215",
        "whois.afrinic.net",
        "-B 196.11.240.215",
        ["abuse@mtnbusiness.co.za"],
        "NET-196-11-239-0",
    ),
    (
        "afrinic-2001_43f8_7b0__.txt",
        "AFRINIC",
        "2001:43f8:7b0::",
        "whois.afrinic.net",
        "-B 2001:43f8:7b0::",
        [],
        "Tespok",
    ),
    (
        "apnic-210.107.73.73.txt",
        "APNIC",
        "210.107.73.73",
        "whois.apnic.net",
        "-B 210.107.73.73",
        ["abuse@bora.net", "security@bora.net"],
        "BORANET-NET-210-107",
    ),
    (
        "apnic-2001_240_10c_1__ca20_9d1d.txt",
        "APNIC",
        "2001:240:10c:1::ca20:9d1d",
        "whois.apnic.net",
        "-B 2001:240:10c:1::ca20:9d1d",
        [],
        "IIJ-PRJNET",
    ),
    (
        "arin-2001_4860_4860__8888.txt",
        "ARIN",
        "2001:4860:4860::8888",
        "whois.arin.net",
        "n + 2001:4860:4860::8888",
        ["arin-contact@google.com"],
        "GOOGLE-IPV6",
    ),
    (
        "arin-74.125.225.229.txt",
        "ARIN",
        "74.125.225.229",
        "whois.arin.net",
        "n + 74.125.225.229",
        ["arin-contact@google.com"],
        "GOOGLE",
    ),
    (
        "ripencc-128.79.0.0.txt",
        "RIPE NCC",
        "128.79.0.10",
        "whois.ripe.net",
        "-r -B 128.79.0.10",
        ["abuse_box@bouyguestelecom.fr"],
        "BOUYGTEL-ISP-CABLE",
    ),
    (
        "lacnic-200.57.141.161.txt",
        "LACNIC",
        "200.57.141.161",
        "whois.lacnic.net",
        "200.57.141.161",
        ["operacion.redes@triara.com"],
        "MX-TSCV6-LACNIC",
    ),
    (
        "lacnic-2801_10_c000__.txt",
        "LACNIC",
        "2801:10:c000::",
        "whois.lacnic.net",
        "2801:10:c000::",
        ["sistemas.red@uco.edu.co"],
        "CO-UCOR-LACNIC",
    ),
    (
        "jpnic-133.1.2.5.html",
        "JPNIC",
        "133.1.2.5",
        "whois.nic.ad.jp",
        "133.1.2.5/e",
        [],
        "OSAKAU-NET",
    ),
    (
        "krnic-115.1.2.3.html",
        "KRNIC",
        "115.1.2.3",
        "whois.nic.or.kr",
        "115.1.2.3",
        ["kornet_ip@kt.com"],
        "KORNET",
    ),
]


# ARIN answers whose ReferralServer points on: (file, address, where it refers, what the
# referral is asked, the contacts that must come out, a note that must be there)
REFERRAL_CORPUS = [
    (
        "arin-referral-apnic-144.134.121.81.txt",
        "144.134.121.81",
        "whois.apnic.net",
        "-B 144.134.121.81",
        [],
        "skipped search-apnic-not-arin@apnic.net",
    ),
    (
        "arin-referral-ripe-130.66.76.222.txt",
        "130.66.76.222",
        "whois.ripe.net",
        "-r -B 130.66.76.222",
        [],
        "skipped hostmaster@ripe.net",
    ),
    (
        "arin-referral-rwhois-69.65.39.166.txt",
        "69.65.39.166",
        None,
        None,
        ["abuse@gigenet.com"],
        "rwhois://rwhois.servernap.net:4321/; not followed",
    ),
]


@pytest.mark.corpus
class TestCorpusReferrals:
    @pytest.mark.parametrize(
        ("name", "ip", "server", "sent", "expected", "note"),
        REFERRAL_CORPUS,
        ids=[case[0] for case in REFERRAL_CORPUS],
    )
    async def test_captured_referral(
        self,
        loopback: Loopback,
        corpus_dir: Path,
        name: str,
        ip: str,
        server: str | None,
        sent: str | None,
        expected: list[str],
        note: str,
    ) -> None:
        """An ERX block's registry mailboxes are never used; the referral is followed or noted."""
        loopback["whois.arin.net"].answers = {f"n + {ip}": corpus_file(corpus_dir, name)}
        report = await whois.lookup(ask(ip, "ARIN"), loopback.context())
        assert addresses(report) == expected
        assert any(note in n for n in report.notes), report.notes
        if server is not None:
            assert loopback[server].queries == [sent]
        asked = [n for n, s in loopback.servers.items() if s.queries]
        assert asked == ["whois.arin.net"] + ([server] if server else [])


@pytest.mark.corpus
class TestCorpusReplay:
    @pytest.mark.parametrize(
        ("name", "registry", "ip", "server", "sent", "expected", "netname"),
        CORPUS,
        ids=[case[0] for case in CORPUS],
    )
    async def test_replayed_answer(
        self,
        loopback: Loopback,
        corpus_dir: Path,
        name: str,
        registry: str,
        ip: str,
        server: str,
        sent: str,
        expected: list[str],
        netname: str,
    ) -> None:
        """Each captured answer, served from loopback, yields the expected network and addresses."""
        raw = corpus_file(corpus_dir, name)
        loopback[server].answers = {sent: raw}
        report = await whois.lookup(ask(ip, registry), loopback.context())
        assert loopback[server].queries[0] == sent
        assert addresses(report) == expected
        for contact in report.contacts:
            assert contact.role is Role.NETWORK
            assert contact.sources == ("whois",)
            assert contact.provenance and all(
                server in p or "WHOIS" in p for p in contact.provenance
            )
        assert report.network is not None
        assert report.network.name == netname
        start = ipaddress.ip_address(report.network.start)
        end = ipaddress.ip_address(report.network.end)
        assert int(start) <= int(ipaddress.ip_address(ip)) <= int(end)
        assert report.evidence[0].sha256 == hashlib.sha256(raw).hexdigest()
        assert report.evidence[0].locator == f"whois://{server}/{sent}"

    async def test_every_corpus_file_is_replayed(self, corpus_dir: Path) -> None:
        """The replay table covers all captured WHOIS answers, so a new capture cannot slip by."""
        on_disk = sorted(p.name for p in (corpus_dir / "whois" / "ip").iterdir())
        replayed = [case[0] for case in CORPUS] + [case[0] for case in REFERRAL_CORPUS]
        assert on_disk == sorted(replayed)

    async def test_confidence_and_provenance(self, loopback: Loopback, corpus_dir: Path) -> None:
        """The RIPE abuse header scores as an abuse field, a remark as a stated address."""
        loopback["whois.ripe.net"].answers = {
            "62.239.237.1": corpus_file(corpus_dir, "ripencc-62.239.237.1.txt")
        }
        report = await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context())
        protect, cert = report.contacts
        assert protect.confidence == whois.ABUSE_CONFIDENCE
        assert (
            "abuse contact for 62.239.237.0 - 62.239.237.255, RIPE NCC WHOIS (whois.ripe.net)"
            in protect.provenance
        )
        assert "abuse-mailbox of role BTCR1-RIPE, RIPE NCC WHOIS (whois.ripe.net)" in (
            protect.provenance
        )
        assert cert.confidence == whois.STATED_CONFIDENCE
        assert report.network is not None
        assert report.network.registry == "RIPE NCC"
        assert report.network.cidrs == ("62.239.237.0/24",)
        assert report.network.asn == 2856

    async def test_kr_mirror_never_picks_the_registry_hostmaster(
        self, loopback: Loopback, corpus_dir: Path
    ) -> None:
        """In APNIC's KR mirror, IRT-KRNIC-KR's hostmaster@nic.or.kr is skipped, with a note."""
        loopback["whois.apnic.net"].answers = {
            "210.107.73.73": corpus_file(corpus_dir, "apnic-210.107.73.73.txt")
        }
        report = await whois.lookup(ask("210.107.73.73", "APNIC"), loopback.context())
        assert "hostmaster@nic.or.kr" not in addresses(report)
        assert "ipadm@nic.bora.net" not in addresses(report)  # only for whois corrections
        assert any("hostmaster@nic.or.kr" in n and "registry's own" in n for n in report.notes)

    async def test_jpnic_gateway_page_and_contact_handle(
        self, loopback: Loopback, corpus_dir: Path
    ) -> None:
        """JPNIC's HTML page is stripped; its contact handle is queried for the [E-Mail]."""
        loopback["whois.nic.ad.jp"].answers = {
            "133.1.2.5/e": corpus_file(corpus_dir, "jpnic-133.1.2.5.html"),
            "MY22537JP/e": JPNIC_CONTACT,
        }
        report = await whois.lookup(ask("133.1.2.5", "JPNIC"), loopback.context())
        assert loopback["whois.nic.ad.jp"].queries == ["133.1.2.5/e", "MY22537JP/e"]
        (contact,) = report.contacts
        assert contact.address == "ip-admin@osaka-u.example"
        assert contact.confidence == whois.FALLBACK_CONFIDENCE
        assert contact.name == "Yamada, Manabu"
        assert any(
            "JPNIC handle MY22537JP" in p and "technical contact of OSAKAU-NET" in p
            for p in contact.provenance
        )
        assert report.network is not None
        assert report.network.org == "Osaka University"
        assert report.network.cidrs == ("133.1.0.0/16",)
        assert len(report.evidence) == 2

    async def test_krnic_page_takes_most_specific_block(
        self, loopback: Loopback, corpus_dir: Path
    ) -> None:
        """The KRNIC page's customer /26 is the network; the ISP's IP manager is the contact."""
        loopback["whois.nic.or.kr"].answers = {
            "115.1.2.3": corpus_file(corpus_dir, "krnic-115.1.2.3.html")
        }
        report = await whois.lookup(ask("115.1.2.3", "KRNIC"), loopback.context())
        assert report.network is not None
        assert report.network.cidrs == ("115.1.2.0/26",)
        assert report.network.org == "KT"
        assert report.network.registry == "KRNIC"
        assert report.contacts[0].confidence == whois.STATED_CONFIDENCE


# --------------------------------------------------------------------------- referrals


class TestReferrals:
    async def test_iana_bootstraps_the_registry(self, loopback: Loopback, corpus_dir: Path) -> None:
        """Without a known registry, IANA's refer: line names the server to ask."""
        loopback["whois.iana.org"].answers = {"62.239.237.1": IANA_TO_RIPE}
        loopback["whois.ripe.net"].answers = {
            "62.239.237.1": corpus_file(corpus_dir, "ripencc-62.239.237.1.txt")
        }
        report = await whois.lookup(ask("62.239.237.1"), loopback.context(max_referrals=0))
        assert loopback["whois.iana.org"].queries == ["62.239.237.1"]
        assert loopback["whois.ripe.net"].queries == ["-r -B 62.239.237.1"]
        assert addresses(report)[0] == "protect@bt.com"
        assert any(
            "following referral from whois.iana.org to whois.ripe.net" in n for n in report.notes
        )
        assert [e.locator.split("/")[2] for e in report.evidence] == [
            "whois.iana.org",
            "whois.ripe.net",
        ]

    async def test_registry_named_as_rdap_does_skips_iana(self, loopback: Loopback) -> None:
        """A registry name from RDAP ("RIPE NCC") starts at RIPE; IANA is not asked."""
        await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context())
        assert loopback["whois.iana.org"].queries == []
        assert loopback["whois.ripe.net"].queries == ["-r -B 62.239.237.1"]

    async def test_arin_last_referral_server_followed(self, loopback: Loopback) -> None:
        """ARIN's last ReferralServer (most specific block) is followed to a second server."""
        transit = await loopback.add("whois.transit-isp.example")
        downstream = await loopback.add(
            "whois.downstream-isp.example", WhoisServer({"74.125.225.229": DOWNSTREAM_RPSL})
        )
        loopback["whois.arin.net"].answers = {"74.125.225.229": ARIN_REALLOCATED}
        report = await whois.lookup(ask("74.125.225.229", "ARIN"), loopback.context())
        assert transit.queries == []
        assert downstream.queries == ["74.125.225.229"]
        assert addresses(report) == ["abuse@downstream-isp.example", "abuse@transit-isp.example"]
        assert report.network is not None
        assert report.network.name == "DOWNSTREAM-CUSTOMERS"
        assert any("whois.downstream-isp.example (ReferralServer)" in n for n in report.notes)

    async def test_rwhois_not_followed_without_override(self, loopback: Loopback) -> None:
        """An rwhois:// referral is noted, not followed, when no server is configured for it."""
        answer = ARIN_REALLOCATED.replace(
            "whois://whois.downstream-isp.example:4343",
            "rwhois://rwhois.downstream-isp.example:4321/",
        )
        loopback["whois.arin.net"].answers = {"74.125.225.229": answer}
        report = await whois.lookup(ask("74.125.225.229", "ARIN"), loopback.context())
        assert addresses(report) == ["abuse@transit-isp.example"]
        assert any(
            "rwhois://rwhois.downstream-isp.example:4321/" in n and "not followed" in n
            for n in report.notes
        )
        assert len(report.evidence) == 1

    async def test_rwhois_followed_to_configured_server(self, loopback: Loopback) -> None:
        """An rwhois:// referral is followed when whois.servers maps its host to a server."""
        rwhois = await loopback.add(
            "rwhois.downstream-isp.example",
            WhoisServer({"74.125.225.229": "network:Abuse-Contact:abuse@downstream-isp.example\n"}),
        )
        answer = ARIN_REALLOCATED.replace(
            "whois://whois.downstream-isp.example:4343",
            "rwhois://rwhois.downstream-isp.example:4321/",
        )
        loopback["whois.arin.net"].answers = {"74.125.225.229": answer}
        report = await whois.lookup(ask("74.125.225.229", "ARIN"), loopback.context())
        assert rwhois.queries == ["74.125.225.229"]
        assert "abuse@downstream-isp.example" in addresses(report)

    async def test_apnic_kr_mirror_refers_to_krnic(
        self, loopback: Loopback, corpus_dir: Path
    ) -> None:
        """APNIC's KRNIC mirror refers to whois.nic.or.kr, whose abuse block is taken."""
        loopback["whois.apnic.net"].answers = {
            "210.107.73.73": corpus_file(corpus_dir, "apnic-210.107.73.73.txt")
        }
        loopback["whois.nic.or.kr"].answers = {"210.107.73.73": KRNIC_BORANET.encode("utf-8")}
        report = await whois.lookup(ask("210.107.73.73", "APNIC"), loopback.context())
        assert loopback["whois.nic.or.kr"].queries == ["210.107.73.73"]
        found = addresses(report)
        assert found[0] == "abuse@boranet.example"
        assert {"abuse@bora.net", "security@bora.net", "ip-manager@boranet.example"} <= set(found)
        assert "hostmaster@nic.or.kr" not in found
        assert report.network is not None
        assert report.network.registry == "KRNIC"
        assert report.network.name == "BORANET"
        assert any("KRNIC data partially mirrored by APNIC" in n for n in report.notes)

    async def test_apnic_jp_mirror_refers_to_jpnic(
        self, loopback: Loopback, corpus_dir: Path
    ) -> None:
        """APNIC's JPNIC mirror refers to whois.nic.ad.jp (asked in English), then the handle."""
        ip = "2001:240:10c:1::ca20:9d1d"
        loopback["whois.apnic.net"].answers = {
            ip: corpus_file(corpus_dir, "apnic-2001_240_10c_1__ca20_9d1d.txt")
        }
        loopback["whois.nic.ad.jp"].answers = {
            f"{ip}/e": JPNIC_IIJ.encode("iso-2022-jp"),
            "IK0000JP/e": JPNIC_IIJ_CONTACT.encode("iso-2022-jp"),
        }
        report = await whois.lookup(ask(ip, "APNIC"), loopback.context())
        assert loopback["whois.nic.ad.jp"].queries == [f"{ip}/e", "IK0000JP/e"]
        assert addresses(report) == ["ip-admin@iij.example"]
        assert "hostmaster@nic.ad.jp" not in addresses(report)
        assert report.network is not None
        assert report.network.registry == "JPNIC"
        assert report.network.cidrs == ("2001:240:10c::/48",)

    async def test_apnic_stub_refers_to_ripe(self, loopback: Loopback, corpus_dir: Path) -> None:
        """An APNIC-STUB "Transferred to the RIPE NCC region" object refers to RIPE."""
        loopback["whois.apnic.net"].answers = {"62.239.237.1": APNIC_STUB}
        loopback["whois.ripe.net"].answers = {
            "62.239.237.1": corpus_file(corpus_dir, "ripencc-62.239.237.1.txt")
        }
        report = await whois.lookup(ask("62.239.237.1", "APNIC"), loopback.context())
        assert loopback["whois.ripe.net"].queries == ["-r -B 62.239.237.1"]
        assert addresses(report) == ["protect@bt.com", "btcertcc@bt.com"]
        assert report.network is not None
        assert report.network.name == "BT-CORPORATE"

    async def test_arin_allocated_to_ripe_refers(
        self, loopback: Loopback, corpus_dir: Path
    ) -> None:
        """ARIN's "Allocated to RIPE NCC" block refers to RIPE; RIPE NCC's own desk is not used."""
        loopback["whois.arin.net"].answers = {"62.239.237.1": ARIN_TO_RIPE}
        loopback["whois.ripe.net"].answers = {
            "62.239.237.1": corpus_file(corpus_dir, "ripencc-62.239.237.1.txt")
        }
        report = await whois.lookup(ask("62.239.237.1", "ARIN"), loopback.context())
        assert "abuse@ripe.net" not in addresses(report)
        assert addresses(report)[0] == "protect@bt.com"

    async def test_referral_loop_detected(self, loopback: Loopback) -> None:
        """A referral back to a server already asked stops the walk, with a note."""
        isp = await loopback.add(
            "whois.isp-a.example",
            WhoisServer(
                {
                    "74.125.225.229": "NetRange: 74.125.225.0 - 74.125.225.255\n"
                    "NetName: ISP-A\nReferralServer: whois://whois.arin.net\n"
                    "OrgAbuseEmail: abuse@isp-a.example\n"
                }
            ),
        )
        loopback["whois.arin.net"].answers = {
            "74.125.225.229": ARIN_CUSTOMER + "ReferralServer: whois://whois.isp-a.example\n"
        }
        report = await whois.lookup(ask("74.125.225.229", "ARIN"), loopback.context())
        assert loopback["whois.arin.net"].queries == ["n + 74.125.225.229"]
        assert isp.queries == ["74.125.225.229"]
        assert any("referral loop" in n and "whois.arin.net" in n for n in report.notes)
        assert "abuse@isp-a.example" in addresses(report)

    async def test_referral_hop_limit(self, loopback: Loopback) -> None:
        """No more than whois.max_referrals referrals are followed."""
        chain = ["whois.hop1.example", "whois.hop2.example", "whois.hop3.example"]
        servers = []
        for index, name in enumerate(chain):
            after = chain[index + 1] if index + 1 < len(chain) else "whois.hop4.example"
            text = f"NetRange: 74.125.225.0 - 74.125.225.255\nReferralServer: whois://{after}\n"
            servers.append(await loopback.add(name, WhoisServer({"74.125.225.229": text})))
        loopback["whois.arin.net"].answers = {
            "74.125.225.229": ARIN_CUSTOMER + f"ReferralServer: whois://{chain[0]}\n"
        }
        report = await whois.lookup(
            ask("74.125.225.229", "ARIN"), loopback.context(max_referrals=2)
        )
        assert [len(s.queries) for s in servers] == [1, 1, 0]
        assert any("whois.max_referrals" in n for n in report.notes)
        assert addresses(report) == ["abuse@transit-isp.example"]

    async def test_referral_to_private_address_refused(self, loopback: Loopback) -> None:
        """A ReferralServer naming a non-public address is refused (no SSRF); ARIN's data stays."""
        loopback["whois.arin.net"].answers = {
            "74.125.225.229": ARIN_CUSTOMER + "ReferralServer: whois://127.0.0.2:43\n"
        }
        report = await whois.lookup(ask("74.125.225.229", "ARIN"), loopback.context())
        assert addresses(report) == ["abuse@transit-isp.example"]
        assert any("referral to 127.0.0.2 failed" in n and "non-public" in n for n in report.notes)

    async def test_failed_referral_keeps_what_was_found(self, loopback: Loopback) -> None:
        """A referred server that hangs up leaves a note; the first answer's contacts remain."""
        await loopback.add("whois.isp-a.example", WhoisServer(close_without_answer=True))
        loopback["whois.arin.net"].answers = {
            "74.125.225.229": ARIN_CUSTOMER + "ReferralServer: whois://whois.isp-a.example\n"
        }
        report = await whois.lookup(ask("74.125.225.229", "ARIN"), loopback.context())
        assert addresses(report) == ["abuse@transit-isp.example"]
        assert any("referral to whois.isp-a.example failed" in n for n in report.notes)

    async def test_failed_referral_with_nothing_found_raises(self, loopback: Loopback) -> None:
        """When the referring answer has no contact and the referral fails, the error surfaces."""
        await loopback.add("whois.isp-a.example", WhoisServer(close_without_answer=True))
        loopback["whois.iana.org"].answers = {"74.125.225.229": "refer: whois.isp-a.example\n"}
        with pytest.raises(SourceUnavailable):
            await whois.lookup(ask("74.125.225.229"), loopback.context())


# --------------------------------------------------------------------------- hostile servers


class TestHostileServers:
    async def test_drip_bounded_by_timeout(self, loopback: Loopback, corpus_dir: Path) -> None:
        """A server dripping a byte at a time cannot hold the lookup past whois.timeout."""
        server = loopback["whois.ripe.net"]
        server.answers = {"62.239.237.1": corpus_file(corpus_dir, "ripencc-62.239.237.1.txt")}
        server.drip = 0.01
        started = time.monotonic()
        with pytest.raises(SourceTimeout):
            await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context(timeout=0.3))
        assert time.monotonic() - started < 1.5

    async def test_huge_answer_capped(self, loopback: Loopback) -> None:
        """An endless answer is cut at whois.max_bytes and refused."""
        loopback["whois.ripe.net"].huge = 20_000_000
        with pytest.raises(SourceProtocolError, match="cap"):
            await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context(max_bytes=65_536))

    async def test_close_without_answer(self, loopback: Loopback) -> None:
        """A server that hangs up without a word is unavailable, not an empty success."""
        loopback["whois.ripe.net"].close_without_answer = True
        with pytest.raises(SourceUnavailable, match="without an answer"):
            await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context())

    async def test_never_answering_server_times_out(self, loopback: Loopback) -> None:
        """A silent server costs at most whois.timeout."""
        loopback["whois.ripe.net"].never_answer = True
        started = time.monotonic()
        with pytest.raises(SourceTimeout):
            await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context(timeout=0.2))
        assert time.monotonic() - started < 1.5

    @pytest.mark.parametrize(
        ("server", "answer"),
        [
            (
                "whois.ripe.net",
                "%ERROR:201: access denied for 127.0.0.1\n%\n"
                "% Sorry, access from your host has been permanently\n"
                "% denied because of a repeated excessive querying.\n",
            ),
            (
                "whois.apnic.net",
                "% [whois.apnic.net]\n\n%ERROR:202: access control limit reached\n",
            ),
            ("whois.arin.net", "Query rate limit exceeded. Please try again later.\n"),
        ],
    )
    async def test_rate_limit_marker(self, loopback: Loopback, server: str, answer: str) -> None:
        """Rate-limit answers raise SourceUnavailable and hold further queries to that server."""
        loopback[server].default = answer
        ctx = loopback.context(timeout=0.2)
        with pytest.raises(SourceUnavailable, match="query limit"):
            await whois.query_whois(server, "62.239.237.1", ctx)
        with pytest.raises(SourceUnavailable, match="rate limit"):
            await whois.query_whois(server, "62.239.237.1", ctx)
        assert len(loopback[server].queries) == 1

    async def test_crlf_injection_dropped(self, loopback: Loopback) -> None:
        """Addresses carrying CR or other control characters are refused whole, with notes."""
        loopback["whois.ripe.net"].answers = {"62.239.237.1": RIPE_INJECTED}
        report = await whois.lookup(ask("62.239.237.1", "RIPE NCC"), loopback.context())
        assert report.contacts == []
        refused = [n for n in report.notes if "control characters" in n]
        assert len(refused) == 3
        for note in report.notes:
            assert "\r" not in note and "\x0b" not in note
            assert "victim@target.example" not in note

    async def test_hostile_query_never_sent(self, loopback: Loopback) -> None:
        """A query holding CR/LF is refused before any connection is made."""
        with pytest.raises(SourceProtocolError):
            await whois.query_whois("whois.ripe.net", "1.2.3.4\r\n-i mnt-by X", loopback.context())
        assert loopback["whois.ripe.net"].queries == []

    async def test_lacnic_placeholder_dropped(self, loopback: Loopback) -> None:
        """LACNIC's removed@lacnic.net placeholder is dropped; the tech-c stands in, with a note."""
        loopback["whois.lacnic.net"].answers = {"200.57.141.161": LACNIC_PLACEHOLDER}
        report = await whois.lookup(ask("200.57.141.161", "LACNIC"), loopback.context())
        assert addresses(report) == ["noc@triara.example"]
        assert report.contacts[0].confidence == whois.FALLBACK_CONFIDENCE
        assert any("placeholder" in n and "removed@lacnic.net" in n for n in report.notes)


# --------------------------------------------------------------------------- charsets


class TestCharsets:
    async def test_jpnic_iso_2022_jp(self, loopback: Loopback) -> None:
        """JPNIC answers in ISO-2022-JP are decoded: Japanese labels and names survive."""
        loopback["whois.nic.ad.jp"].answers = {"133.1.2.5/e": JPNIC_JAPANESE.encode("iso-2022-jp")}
        report = await whois.lookup(ask("133.1.2.5", "JPNIC"), loopback.context())
        assert report.network is not None
        assert report.network.org == "大阪大学"
        assert report.network.name == "OSAKAU-NET"

    def test_apnic_latin1_and_utf8(self) -> None:
        """APNIC's ISO-8859-1 answers decode, and so do answers it sends in UTF-8."""
        text = "inetnum: 1.1.1.0 - 1.1.1.255\nnetname: X\ndescr: Société Générale\n"
        for raw in (text.encode("iso-8859-1"), text.encode("utf-8")):
            decoded = whois.decode_answer(raw, "whois.apnic.net")
            record = whois.parse_whois(decoded, "whois.apnic.net")
            assert record.network is not None
            assert record.network.org == "Société Générale"

    def test_html_meta_charset(self) -> None:
        """A registry web page is decoded in the charset its meta tag declares."""
        page = (
            '<HTML><HEAD><META http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
            "</HEAD><BODY><PRE>b. [ネットワーク名]  OSAKAU-NET\n"
            "a. [IPネットワークアドレス]  133.1.0.0/16</PRE></BODY></HTML>"
        ).encode("shift_jis")
        record = whois.parse_whois(whois.decode_answer(page, "whois.nic.ad.jp"), "whois.nic.ad.jp")
        assert record.network is not None
        assert record.network.name == "OSAKAU-NET"

    def test_hostile_meta_charset_ignored(self) -> None:
        """A page naming a non-text codec (base64) or an unknown one falls back to UTF-8."""
        for charset in (b"base64", b"no-such-charset", b"idna"):
            page = b'<html><meta charset="' + charset + b'"><pre>descr: caf\xc3\xa9</pre></html>'
            assert "café" in whois.decode_answer(page, "whois.ripe.net")

    def test_undecodable_bytes_do_not_crash(self) -> None:
        """Bytes valid in no expected charset are replaced, never raised."""
        text = whois.decode_answer(
            b"inetnum: 1.1.1.0 - 1.1.1.255\ndescr: \xff\xfe\x80\n", "x.example"
        )
        assert "\ufffd" in text
        assert whois.parse_whois(text, "x.example").network is not None


# --------------------------------------------------------------------------- pure parsers


class TestParsers:
    def test_twnic_netname_format(self) -> None:
        """TWNIC's Netname/Netblock layout: the abuse block wins over admin/tech blocks."""
        record = whois.parse_whois(TWNIC_NETNAME, "whois.twnic.net.tw")
        assert record.format == "twnic"
        assert addresses(record) == ["abuse@hinet.example"]
        assert record.contacts[0].confidence == whois.ABUSE_CONFIDENCE
        assert record.network is not None
        assert record.network.name == "HINET-NET"
        assert record.network.cidrs == ("168.95.0.0/16",)
        assert record.network.country == "TW"
        assert record.network.registry == "TWNIC"

    def test_twnic_customer_block(self) -> None:
        """TWNIC's customer block (the last) is the network; its technical contact the fallback."""
        record = whois.parse_whois(TWNIC_CUSTOMER, "whois.twnic.net.tw")
        assert record.network is not None
        assert record.network.name == "EXAMPLE-UNIVERSITY-NET"
        assert record.network.org == "Example University Computer Center"
        assert addresses(record) == ["network-adm@hinet.example", "netadm@university.example"]
        assert {c.confidence for c in record.contacts} == {whois.FALLBACK_CONFIDENCE}

    def test_twnic_rpsl_skips_nir_irt(self) -> None:
        """TWNIC's RPSL answer: IRT-TWNIC-AP's hostmaster is skipped, the ISP's IRT taken."""
        record = whois.parse_whois(TWNIC_RPSL, "whois.twnic.net.tw")
        assert addresses(record) == ["abuse@hinet.example", "network-adm@hinet.example"]
        assert "hostmaster@twnic.net.tw" not in addresses(record)
        assert record.network is not None
        assert record.network.registry == "TWNIC"
        assert record.referral is None  # already at the NIR

    def test_cnnic(self) -> None:
        """CNNIC's RPSL: the member IRT's abuse-mailbox first, CNNIC's own IRT skipped."""
        record = whois.parse_whois(CNNIC_RPSL, "whois.cnnic.cn")
        assert addresses(record) == ["abuse@cstnet.example", "noc@cstnet.example"]
        assert record.contacts[0].provenance == (
            "abuse-mailbox of IRT-CSTNET-CN, CNNIC WHOIS (whois.cnnic.cn)",
        )
        assert record.network is not None
        assert record.network.registry == "CNNIC"
        assert record.network.name == "CSTNET"

    def test_idnic(self) -> None:
        """IDNIC's RPSL (source ID-NIC): the member IRT is taken, IRT-IDNIC-ID skipped."""
        record = whois.parse_whois(IDNIC_RPSL, "whois.idnic.net")
        assert addresses(record) == ["abuse@contoh.example", "noc@contoh.example"]
        assert all("idnic.net" not in a for a in addresses(record))
        assert record.network is not None
        assert record.network.registry == "IDNIC"
        assert record.network.cidrs == ("103.10.0.0/22",)

    def test_apnic_abuse_c_role(self) -> None:
        """APNIC abuse-c roles (prop-125): abuse-mailbox and e-mail both abuse-level."""
        record = whois.parse_whois(APNIC_ABUSE_C, "whois.apnic.net")
        assert addresses(record) == ["abuse@isp-au.example", "report@isp-au.example"]
        assert {c.confidence for c in record.contacts} == {whois.ABUSE_CONFIDENCE}
        assert "noc@isp-au.example" not in addresses(record)

    def test_registro_br(self) -> None:
        """registro.br via the LACNIC layout: abbreviated CIDR, nic-hdl-br blocks, abuse-c."""
        record = whois.parse_whois(REGISTRO_BR, "whois.lacnic.net")
        assert record.registry == "registro.br"
        assert addresses(record) == ["abuse@provedor.example"]
        assert record.contacts[0].provenance == (
            "e-mail of abuse-c ABX7, registro.br WHOIS (whois.lacnic.net)",
        )
        assert record.network is not None
        assert record.network.cidrs == ("177.10.0.0/16",)
        assert record.network.org == "Provedor Exemplo Telecomunicações Ltda"
        assert record.network.asn == 64500
        assert record.network.country == "BR"

    def test_krnic_korean_labels(self) -> None:
        """KRNIC's Korean labels (IPv4 주소, 기관명, E-Mail); an abuse block scores as abuse."""
        record = whois.parse_whois(KRNIC_BORANET, "whois.nic.or.kr")
        assert record.format == "krnic"
        assert addresses(record) == ["abuse@boranet.example", "ip-manager@boranet.example"]
        assert record.contacts[0].confidence == whois.ABUSE_CONFIDENCE
        assert record.network is not None
        assert record.network.org == "주식회사 엘지유플러스"
        assert record.network.start == "210.106.224.0"

    def test_jpnic_contact_record(self) -> None:
        """A JPNIC contact record's [E-Mail] is a fallback contact naming the handle."""
        record = whois.parse_whois(JPNIC_CONTACT, "whois.nic.ad.jp")
        assert addresses(record) == ["ip-admin@osaka-u.example"]
        assert record.contacts[0].provenance == (
            "[E-Mail] of JPNIC handle MY22537JP, JPNIC WHOIS (whois.nic.ad.jp)",
        )
        assert record.network is None

    def test_jpnic_less_specific_section_ignored(self) -> None:
        """Networks listed under "Less Specific Info." do not replace the queried one."""
        record = whois.parse_whois(JPNIC_IIJ, "whois.nic.ad.jp")
        assert record.network is not None
        assert record.network.name == "IIJ-PRJNET"
        assert record.contact_handles == (
            ("IK0000JP", "administrative contact and technical contact of IIJ-PRJNET"),
        )

    def test_arin_customer_block_inherits_abuse(self) -> None:
        """A reassigned block without POCs is the network; its parent's abuse desk the contact."""
        record = whois.parse_whois(ARIN_CUSTOMER, "whois.arin.net")
        assert record.network is not None
        assert record.network.name == "CUST-EXAMPLE"
        assert record.network.org == "Customer Example"
        assert record.network.cidrs == ("74.125.225.0/26",)
        assert addresses(record) == ["abuse@transit-isp.example"]

    def test_arin_reallocation_with_own_abuse_wins(self) -> None:
        """The most specific (last) block's own abuse desk is chosen over its parent's."""
        record = whois.parse_whois(ARIN_REALLOCATED_WITH_ABUSE, "whois.arin.net")
        assert addresses(record) == ["abuse@downstream-isp.example"]
        assert record.network is not None
        assert record.network.country == "CA"

    def test_arin_noc_fallback(self) -> None:
        """Without any abuse POC, ARIN's NOC/tech addresses are kept at fallback confidence."""
        text = ARIN_CUSTOMER.replace("OrgAbuseHandle: ABUSE1-ARIN\n", "").replace(
            "OrgAbuseEmail:  abuse@transit-isp.example\n", ""
        )
        record = whois.parse_whois(text, "whois.arin.net")
        assert addresses(record) == ["noc@transit-isp.example"]
        assert record.contacts[0].confidence == whois.FALLBACK_CONFIDENCE

    def test_arin_last_referral_server(self) -> None:
        """With several NetRange blocks, the last ReferralServer is the referral."""
        record = whois.parse_whois(ARIN_REALLOCATED, "whois.arin.net", query="74.125.225.229")
        assert record.referral == whois.Referral(
            server="whois.downstream-isp.example",
            query="74.125.225.229",
            port=4343,
            reason="ReferralServer",
        )

    def test_arin_no_match(self) -> None:
        """ARIN's "No match found" gives no network and says so."""
        record = whois.parse_whois("\nNo match found for n + 74.125.225.229.\n", "whois.arin.net")
        assert record.network is None
        assert record.contacts == ()
        assert any("No match found" in n for n in record.notes)

    def test_iana(self) -> None:
        """IANA's refer: line becomes a referral that supersedes IANA's own answer."""
        record = whois.parse_whois(IANA_TO_RIPE, "whois.iana.org", query="62.239.237.1")
        assert record.referral is not None
        assert record.referral.server == "whois.ripe.net"
        assert record.referral.supersedes

    def test_nir_mirror_found_in_remarks(self, corpus_dir: Path) -> None:
        """The "partially mirrored by APNIC from KRNIC" remark alone is enough to refer."""
        text = corpus_file(corpus_dir, "apnic-210.107.73.73.txt").decode("ascii")
        text = text.replace("source:         KRNIC", "source:         APNIC")
        record = whois.parse_whois(text, "whois.apnic.net", query="210.107.73.73")
        assert record.referral is not None
        assert record.referral.server == "whois.nic.or.kr"
        assert record.referral.query == "210.107.73.73"
        assert not record.referral.supersedes

    def test_ripe_non_managed_block_refers_to_iana(self) -> None:
        """RIPE's NON-RIPE-NCC-MANAGED-ADDRESS-BLOCK placeholder refers the query to IANA."""
        text = (
            "inetnum:        74.0.0.0 - 74.255.255.255\n"
            "netname:        NON-RIPE-NCC-MANAGED-ADDRESS-BLOCK\n"
            "descr:          IPv4 address block not managed by the RIPE NCC\n"
            "source:         RIPE\n"
        )
        record = whois.parse_whois(text, "whois.ripe.net", query="74.125.225.229")
        assert record.referral is not None
        assert record.referral.server == "whois.iana.org"
        assert record.referral.supersedes

    def test_lacnic_joint_whois_relays_other_formats(self) -> None:
        """LACNIC's Joint Whois relaying RIPE data is parsed as RPSL."""
        relayed = "% Joint Whois - whois.lacnic.net\n% RIPE resource: whois.ripe.net\n\n" + (
            "inetnum: 62.239.237.0 - 62.239.237.255\nnetname: X\nabuse-c: A1-RIPE\n\n"
            "role: Abuse\nnic-hdl: A1-RIPE\nabuse-mailbox: abuse@isp-eu.example\n"
        )
        record = whois.parse_whois(relayed, "whois.lacnic.net")
        assert record.format == "rpsl"
        assert addresses(record) == ["abuse@isp-eu.example"]
        assert "RIPE NCC WHOIS (whois.ripe.net)" in record.contacts[0].provenance[0]

    def test_unknown_format_reads_only_abuse_lines(self) -> None:
        """An unrecognised layout yields only addresses on lines that speak of abuse."""
        text = "owner: someone\ncontact: owner@isp.example\nabuse reports: abuse@isp.example\n"
        record = whois.parse_whois(text, "whois.isp.example")
        assert record.format == "unknown"
        assert addresses(record) == ["abuse@isp.example"]

    @pytest.mark.parametrize(
        ("name", "server"),
        [
            ("RIPE NCC", "whois.ripe.net"),
            ("ripencc", "whois.ripe.net"),
            ("ARIN", "whois.arin.net"),
            ("APNIC", "whois.apnic.net"),
            ("LACNIC", "whois.lacnic.net"),
            ("AfriNIC", "whois.afrinic.net"),
            ("JPNIC", "whois.nic.ad.jp"),
            ("KRNIC", "whois.nic.or.kr"),
            ("whois.krnic.net", "whois.nic.or.kr"),
            ("ID-NIC", "whois.idnic.net"),
            ("registro.br", "whois.registro.br"),
            ("unknown registry", None),
        ],
    )
    def test_registry_server(self, name: str, server: str | None) -> None:
        """Registry names as RDAP, RPSL and configuration spell them map to WHOIS servers."""
        assert whois.registry_server(name) == server

    @pytest.mark.parametrize(
        ("server", "line"),
        [
            ("whois.arin.net", "n + 1.2.3.4"),
            ("whois.ripe.net", "-r -B 1.2.3.4"),
            ("whois.apnic.net", "-B 1.2.3.4"),
            ("whois.afrinic.net", "-B 1.2.3.4"),
            ("whois.lacnic.net", "1.2.3.4"),
            ("whois.nic.ad.jp", "1.2.3.4/e"),
            ("whois.nic.or.kr", "1.2.3.4"),
            ("whois.iana.org", "1.2.3.4"),
        ],
    )
    def test_query_syntax(self, server: str, line: str) -> None:
        """Each registry is asked in its own query syntax."""
        assert whois.query_string(server, "1.2.3.4") == line
