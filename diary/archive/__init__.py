"""A site's archive: the investigator's certified copy of their participants' data.

``build`` writes it from one snapshot of the database (a paper diary per participant as PDF/A,
the analysis tables and Dataset-JSON for the site, the staff access report, every protocol
version's text, a README and a manifest of SHA-256 hashes); ``verify`` checks an archive with no
database at all, hashes and endpoints; ``custody`` says who may take a site's archive and audits
each step of its custody (built, downloaded, confirmed received).

May import the rule packages, the reporting and the exports; the PDF renderer is handed in by
the caller (the web layer owns the templates).
"""
