"""Define-XML 2.1 for the SDTM domains: sdtm/define.xml and its stylesheet-free rendering,
sdtm/define.html.

Written from the same column definitions that write the domains (``sdtm.DOMAINS``) and from the
domain files just written: lengths are the longest value, codelists the values the data holds
(with their decodes where the domain carries them). Every variable says where it comes from
(``ORIGINS``: collected from the participant or the investigator, assigned by the sponsor or the
protocol, or derived), and every derived one how (``METHODS``).
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.1"
XLINK = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

SDTMIG = ("SDTMIG", "3.4")
DATA_TYPES = {"string": "text", "integer": "integer", "double": "float", "datetime": "datetime"}

# SDTMIG 3.4's class and structure of each domain written.
CLASSES = {
    "DM": ("SPECIAL PURPOSE", "One record per subject"),
    "SE": ("SPECIAL PURPOSE", "One record per actual Element per subject"),
    "EX": ("INTERVENTIONS", "One record per constant dosing interval per subject"),
    "QS": ("FINDINGS", "One record per questionnaire per question per time point per visit per subject"),
    "AE": ("EVENTS", "One record per adverse event per subject"),
    "DS": ("EVENTS", "One record per disposition status or protocol milestone per subject"),
    "SV": ("SPECIAL PURPOSE", "One record per actual visit per subject"),
    "TE": ("TRIAL DESIGN", "One record per planned Element"),
    "TA": ("TRIAL DESIGN", "One record per planned Element per Arm"),
    "TV": ("TRIAL DESIGN", "One record per planned Visit per Arm"),
    "TS": ("TRIAL DESIGN", "One record per trial summary parameter value"),
}
# Required variables (SDTMIG 3.4 Core "Req"): Mandatory="Yes" in the define.
REQUIRED = {
    "STUDYID",
    "DOMAIN",
    "USUBJID",
    "SUBJID",
    "SITEID",
    "SEX",
    "COUNTRY",
    "SESEQ",
    "ETCD",
    "SESTDTC",
    "EXSEQ",
    "EXTRT",
    "QSSEQ",
    "QSTESTCD",
    "QSTEST",
    "QSCAT",
    "AESEQ",
    "AETERM",
    "AEDECOD",
    "DSSEQ",
    "DSTERM",
    "DSDECOD",
    "ELEMENT",
    "TAETORD",
    "TSSEQ",
    "TSPARMCD",
    "TSPARM",
    "TSVAL",
}

COLLECTED_FROM_SUBJECT = ("Collected", "Subject")
COLLECTED_BY_INVESTIGATOR = ("Collected", "Investigator")
ASSIGNED = ("Assigned", "Sponsor")
PROTOCOL = ("Protocol", None)
DERIVED = ("Derived", None)

# Where each variable comes from, by name (the same name means the same thing in every domain).
ORIGINS = {
    "STUDYID": ASSIGNED,
    "DOMAIN": ASSIGNED,
    "USUBJID": DERIVED,
    "SUBJID": ASSIGNED,
    "SITEID": ASSIGNED,
    "BRTHDTC": COLLECTED_BY_INVESTIGATOR,
    "AGE": DERIVED,
    "AGEU": ASSIGNED,
    "SEX": COLLECTED_BY_INVESTIGATOR,
    "ARMNRS": DERIVED,
    "ACTARMUD": DERIVED,
    "COUNTRY": ASSIGNED,
    "RFSTDTC": DERIVED,
    "RFENDTC": DERIVED,
    "RFXSTDTC": DERIVED,
    "RFXENDTC": DERIVED,
    "RFICDTC": COLLECTED_BY_INVESTIGATOR,
    "ARMCD": ASSIGNED,
    "ARM": ASSIGNED,
    "ACTARMCD": DERIVED,
    "ACTARM": DERIVED,
    "ETCD": DERIVED,
    "ELEMENT": DERIVED,
    "TAETORD": DERIVED,
    "SESTDTC": DERIVED,
    "SEENDTC": DERIVED,
    "EXTRT": PROTOCOL,
    "EXROUTE": PROTOCOL,
    "EXSTDTC": COLLECTED_BY_INVESTIGATOR,
    "SVSTDTC": DERIVED,
    "SVENDTC": DERIVED,
    "EXENDTC": DERIVED,
    "EXDOSE": PROTOCOL,
    "EXDOSU": PROTOCOL,
    "EXDOSFRM": PROTOCOL,
    "QSTESTCD": PROTOCOL,
    "QSTEST": PROTOCOL,
    "QSCAT": PROTOCOL,
    "QSORRES": COLLECTED_FROM_SUBJECT,
    "QSSTRESC": DERIVED,
    "QSSTRESN": DERIVED,
    "QSDTC": COLLECTED_FROM_SUBJECT,
    "QSLOBXFL": DERIVED,
    "AETERM": COLLECTED_FROM_SUBJECT,
    "AEDECOD": ASSIGNED,
    "AECAT": ASSIGNED,
    "AEPRESP": PROTOCOL,
    "AESEV": COLLECTED_FROM_SUBJECT,
    "AESTDTC": COLLECTED_FROM_SUBJECT,
    "DSTERM": COLLECTED_BY_INVESTIGATOR,
    "DSDECOD": ASSIGNED,
    "DSCAT": ASSIGNED,
    "DSSCAT": ASSIGNED,
    "DSSTDTC": COLLECTED_BY_INVESTIGATOR,
    "EPOCH": DERIVED,
    "VISITNUM": DERIVED,
    "VISIT": DERIVED,
    "TESTRL": PROTOCOL,
    "TEENRL": PROTOCOL,
    "TABRANCH": PROTOCOL,
    "TVSTRL": PROTOCOL,
    "TVENRL": PROTOCOL,
    "TSPARMCD": PROTOCOL,
    "TSPARM": PROTOCOL,
    "TSVAL": PROTOCOL,
}
# Where a name means the planned trial rather than a subject's data: the trial design domains.
DESIGN_ORIGINS = {
    (domain, name): PROTOCOL
    for domain in ("TE", "TA", "TV")
    for name in ("ETCD", "ELEMENT", "TAETORD", "EPOCH", "ARMCD", "ARM", "VISITNUM", "VISIT")
}
STUDY_DAY = (
    "Study day of the date: the date (on the participant's clock) minus the date of RFSTDTC, plus 1 "
    "when on or after it; the day before RFSTDTC is -1 (no day 0)."
)
SEQUENCE = "Sequential number of the record within the subject, in the order the records occur."
# Variables the diary does not collect, left null, and why (define.xml says so: Origin "Not
# Available" with this comment).
NOT_COLLECTED = {
    name: "Not collected by the diary: participants report the side effect and its severity; seriousness, "
    "action taken, causality, outcome and end are assessed on the site's adverse-event form."
    for name in ("AESER", "AEACN", "AEREL", "AEOUT", "AEENDTC", "AEENDY")
}
# Other variables whose define entry carries a comment.
COMMENTS = {
    **NOT_COLLECTED,
    "EXDOSE": "The protocol's dose of the treatment given. Null while the drug names are withheld (blinded): "
    "the doses differ between the drugs.",
    "EXDOSU": "The protocol's unit of the dose; null while the drug names are withheld, as EXDOSE.",
    "AEDECOD": "Checklist side effects are coded in the protocol; what participants write in their own words "
    "is coded by the study team (staff page Coding, audited). Null while a verbatim report is not coded yet.",
}
# How each derived variable is computed (a variable named here is Derived; see ORIGINS).
METHODS = {
    "USUBJID": "STUDYID, a hyphen and SUBJID.",
    "RFSTDTC": "Start of the subject's first infusion (EXSTDTC of EXSEQ 1).",
    "RFENDTC": "End of the last element: the close of the last infusion's last diary window, or the withdrawal.",
    "RFXSTDTC": "Start of the subject's first infusion.",
    "RFXENDTC": "Start of the subject's last infusion (each infusion lasts 40 minutes).",
    "AGE": "Year of RFICDTC minus the year of birth (only the year is collected): one more than the exact age before the birthday.",
    "ACTARMCD": "ARMCD when the infusions given follow the planned sequence (all or the first ones); UNPLAN otherwise; null when none was given.",
    "ACTARM": "ARM when the infusions given follow the planned sequence; Unplanned Treatment otherwise; null when none was given.",
    "ARMNRS": "ASSIGNED, NOT TREATED when no infusion was given.",
    "ACTARMUD": "The treatments actually given, in order, when they follow no planned arm.",
    "ETCD": "SCRN before the first infusion, then the treatment code of each infusion given.",
    "ELEMENT": "The element's description: Screening, or the treatment of the infusion.",
    "TAETORD": "The element's order in the subject's arm (1 screening, then 2, 3 for the infusions).",
    "SESTDTC": "Start of the element: enrolment for screening, the infusion start for a treatment.",
    "SEENDTC": "Start of the next element, or the close of the last diary window, or the withdrawal.",
    "SVSTDTC": "The earliest of the visit's entries (QSDTC) and, for the infusion day's visit, the infusion start.",
    "SVENDTC": "The latest of the visit's entries and, for the infusion day's visit, the infusion start.",
    "EXENDTC": "EXSTDTC plus the protocol's infusion length (the end of the infusion is not recorded).",
    "QSSTRESC": "QSORRES, unchanged (the scales are collected in their standard units).",
    "QSSTRESN": "QSORRES as a number.",
    "EPOCH": "SCREENING before the first infusion, then TREATMENT n from the start of infusion n.",
    "QSLOBXFL": "Y on the last record of each QSTESTCD with QSDTC before RFXSTDTC (the first infusion).",
    "VISITNUM": "Period x 100 plus the time point's order in the protocol (EX: that of the period's first time point, the infusion day's).",
    "VISIT": "PERIOD n and the protocol's time point code (EX: the period's first time point).",
}
# Variables whose values are listed as a codelist, with the variable that decodes them.
CODELISTS = {
    "ARMCD": "ARM",
    "SEX": None,
    "AGEU": None,
    "COUNTRY": None,
    "ARMNRS": None,
    "ACTARMCD": "ACTARM",
    "ETCD": "ELEMENT",
    "EPOCH": None,
    "EXROUTE": None,
    "EXDOSU": None,
    "EXDOSFRM": None,
    "QSTESTCD": "QSTEST",
    "QSCAT": None,
    "AECAT": None,
    "AEPRESP": None,
    "AESEV": None,
    "QSLOBXFL": None,
    "DSDECOD": None,
    "DSCAT": None,
    "DSSCAT": None,
    "TSPARMCD": "TSPARM",
}


class DomainProfile:
    """What the define says of a domain's values, taken as its rows are written (the rows are
    not read back): each variable's longest value, a float's most decimals, and the values of a
    variable with a codelist, each with its decode (the first one met)."""

    def __init__(self, variables: list):
        names = [variable.name for variable in variables]
        self.lengths = [1] * len(names)
        self.decimals = {i: 0 for i, variable in enumerate(variables) if DATA_TYPES[variable.type] == "float"}
        # A codelist variable's values, each with its decode: {name: {value: decode}}.
        self.decodes = {name: {} for name in names if name in CODELISTS}
        self._coded = [
            (i, names.index(CODELISTS[name]) if CODELISTS[name] in names else None, self.decodes[name])
            for i, name in enumerate(names)
            if name in CODELISTS
        ]

    def add(self, rows: list[list[str]]) -> None:
        """A batch of rows, as the CSV's text. Column by column (``zip(*rows)``), so the lengths
        and the codelists' first values are taken by C loops, not a Python loop over each cell
        (300,000 rows and 4 million cells for 5,000 participants)."""
        if not rows:
            return
        columns = list(zip(*rows))
        self.lengths = [max(longest, max(map(len, column))) for longest, column in zip(self.lengths, columns)]
        for index, most in self.decimals.items():
            places = (len(cell) - cell.index(".") - 1 for cell in columns[index] if "." in cell)
            self.decimals[index] = max(most, max(places, default=0))
        for index, decode_index, decodes in self._coded:
            decoded_by = columns[decode_index] if decode_index is not None else [None] * len(rows)
            # Reversed, so that each value's first decode in the batch is the one the dict keeps.
            for value, decode in dict(zip(reversed(columns[index]), reversed(decoded_by))).items():
                if value and value not in decodes:
                    decodes[value] = decode


@dataclass
class DomainFile:
    """One domain as written: its name, label, variables and the profile of its values."""

    name: str
    label: str
    variables: list
    profile: DomainProfile


def _method_of(name: str) -> str | None:
    if name in METHODS:
        return METHODS[name]
    if name.endswith("SEQ"):
        return SEQUENCE
    if name.endswith("DY"):
        return STUDY_DAY
    return None


def origin_of(name: str, domain: str = "") -> tuple[str, str | None]:
    if (domain, name) in DESIGN_ORIGINS:
        return DESIGN_ORIGINS[(domain, name)]
    if name in NOT_COLLECTED:
        return ("Not Available", None)
    if name in ORIGINS:
        return ORIGINS[name]
    if name.endswith("SEQ") or name.endswith("DY"):
        return DERIVED
    raise KeyError(f"no origin declared for {name}: add it to define.ORIGINS")


def _sub(parent, tag: str, namespace: str = ODM, **attributes) -> ET.Element:
    return ET.SubElement(parent, f"{{{namespace}}}{tag}", {k: str(v) for k, v in attributes.items() if v is not None})


def _described(parent, text: str) -> None:
    translated = _sub(_sub(parent, "Description"), "TranslatedText")
    translated.set(XML_LANG, "en")
    translated.text = text


def build_define(
    domains: list[DomainFile],
    *,
    study_oid: str,
    study_name: str,
    mdv: str,
    now: datetime,
    app_version: str,
    coding: tuple[str, str] | None = None,
):
    """(the define.xml tree, the rows of its HTML rendering)."""
    root = ET.Element(
        f"{{{ODM}}}ODM",
        {
            "FileType": "Snapshot",
            "FileOID": f"DEF.{study_oid}",
            "CreationDateTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "ODMVersion": "1.3.2",
            "Originator": "diary",
            "SourceSystem": "diary",
            "SourceSystemVersion": app_version,
            f"{{{DEF}}}Context": "Other",
        },
    )
    study = _sub(root, "Study", OID=study_oid)
    variables_of_study = _sub(study, "GlobalVariables")
    for tag, text in (("StudyName", study_oid), ("StudyDescription", study_name), ("ProtocolName", study_oid)):
        _sub(variables_of_study, tag).text = text
    version = _sub(study, "MetaDataVersion", OID=mdv, Name=f"{study_oid} SDTM", **{f"{{{DEF}}}DefineVersion": "2.1.0"})
    standards = _sub(version, "Standards", DEF)
    _sub(standards, "Standard", DEF, OID="STD.SDTMIG", Name=SDTMIG[0], Type="IG", Version=SDTMIG[1], Status="Final")

    item_defs, codelists, methods, rendering = [], {}, {}, []
    for domain in domains:
        profile = domain.profile
        category, structure = CLASSES[domain.name]
        group = _sub(
            version,
            "ItemGroupDef",
            OID=f"IG.{domain.name}",
            Domain=domain.name,
            Name=domain.name,
            Repeating="No" if domain.name == "DM" else "Yes",
            IsReferenceData="No",
            SASDatasetName=domain.name,
            Purpose="Tabulation",
            **{
                f"{{{DEF}}}Structure": structure,
                f"{{{DEF}}}StandardOID": "STD.SDTMIG",
                f"{{{DEF}}}ArchiveLocationID": f"LF.{domain.name}",
            },
        )
        _described(group, domain.label)
        for order, variable in enumerate(domain.variables, start=1):
            oid = f"IT.{domain.name}.{variable.name}"
            kind, source = origin_of(variable.name, domain.name)
            method = _method_of(variable.name) if kind == "Derived" else None
            method_oid = None
            if method:
                method_oid = f"MT.{variable.name}" if variable.name in METHODS else f"MT.{domain.name}.{variable.name}"
                methods[method_oid] = (f"Derivation of {variable.name}", method)
            _sub(
                group,
                "ItemRef",
                ItemOID=oid,
                OrderNumber=order,
                Mandatory="Yes" if variable.name in REQUIRED else "No",
                KeySequence=variable.key,
                MethodOID=method_oid,
            )
            data_type = DATA_TYPES[variable.type]
            length = None
            if data_type in ("text", "integer", "float"):
                length = profile.lengths[order - 1]
            if variable.name in NOT_COLLECTED:
                rendering_note = NOT_COLLECTED[variable.name]
            else:
                rendering_note = method or ""
            codelist_oid = None
            if variable.name == "AEDECOD" and coding:
                codelist_oid = "CL.AEDECOD"
                codelists[codelist_oid] = (variable.name, data_type, coding)
            elif variable.name in CODELISTS and profile.decodes[variable.name]:
                codelist_oid = f"CL.{domain.name}.{variable.name}"
                codelists[codelist_oid] = (variable.name, data_type, profile.decodes[variable.name])
            item_defs.append(
                (
                    oid,
                    variable,
                    data_type,
                    length,
                    profile.decimals[order - 1] if data_type == "float" else None,
                    codelist_oid,
                    kind,
                    source,
                )
            )
            rendering.append(
                (
                    domain.name,
                    variable.name,
                    variable.label,
                    data_type,
                    kind + (f" ({source})" if source else ""),
                    rendering_note,
                    codelist_oid or "",
                )
            )
        _sub(group, "Class", DEF, Name=category)
        leaf = _sub(group, "leaf", DEF, ID=f"LF.{domain.name}", **{f"{{{XLINK}}}href": f"{domain.name.lower()}.json"})
        _sub(leaf, "title", DEF).text = f"{domain.name.lower()}.json"

    for oid, variable, data_type, length, digits, codelist_oid, kind, source in item_defs:
        comment = f"COM.{variable.name}" if variable.name in COMMENTS else None
        item = _sub(
            version,
            "ItemDef",
            OID=oid,
            Name=variable.name,
            DataType=data_type,
            Length=length,
            SignificantDigits=digits,
            SASFieldName=variable.name,
            **({f"{{{DEF}}}CommentOID": comment} if comment else {}),
        )
        _described(item, variable.label)
        if codelist_oid:
            _sub(item, "CodeListRef", CodeListOID=codelist_oid)
        _sub(item, "Origin", DEF, Type=kind, Source=source)

    for oid, (name, data_type, decodes) in sorted(codelists.items()):
        codelist = _sub(version, "CodeList", OID=oid, Name=name, DataType=data_type)
        if isinstance(decodes, tuple):  # an external dictionary: (name, version)
            _sub(codelist, "ExternalCodeList", Dictionary=decodes[0], Version=decodes[1])
            continue
        for value in sorted(decodes):
            if decodes[value] is not None:
                listed = _sub(codelist, "CodeListItem", CodedValue=value)
                decode = _sub(_sub(listed, "Decode"), "TranslatedText")
                decode.set(XML_LANG, "en")
                decode.text = decodes[value]
            else:
                _sub(codelist, "EnumeratedItem", CodedValue=value)

    for oid, (name, text) in sorted(methods.items()):
        method = _sub(version, "MethodDef", OID=oid, Name=name, Type="Computation")
        _described(method, text)
    used = {variable.name for domain in domains for variable in domain.variables}
    for name in sorted(used & set(COMMENTS)):
        _described(_sub(version, "CommentDef", DEF, OID=f"COM.{name}"), COMMENTS[name])
    return ET.ElementTree(root), rendering


def write_define(folder: Path, domains: list[DomainFile], **study) -> None:
    """sdtm/define.xml and sdtm/define.html (the same metadata as a plain table)."""
    tree, rendering = build_define(domains, **study)
    ET.indent(tree, space="  ")
    # ElementTree's prefixes are one registry for the whole process, which other libraries write
    # to as well: set ours just before writing, so the file is the same bytes every time.
    ET.register_namespace("", ODM)
    ET.register_namespace("def", DEF)
    ET.register_namespace("xlink", XLINK)
    tree.write(folder / "define.xml", encoding="UTF-8", xml_declaration=True)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rendering
    )
    (folder / "define.html").write_text(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Define-XML 2.1: '
        + html.escape(study["study_name"])
        + "</title></head><body>\n<h1>Define-XML 2.1: "
        + html.escape(study["study_name"])
        + "</h1>\n<p>The variables of every SDTM domain in this folder: where each comes from and how each "
        "derived one is computed (define.xml holds the same, with the codelists).</p>\n<table>\n<thead><tr>"
        "<th>Domain</th><th>Variable</th><th>Label</th><th>Type</th><th>Origin</th><th>Derivation</th>"
        "<th>Codelist</th></tr></thead>\n<tbody>\n" + rows + "\n</tbody></table></body></html>\n",
        encoding="utf-8",
    )
