"""MkDocs hooks for the minidl site (see ``hooks:`` in mkdocs.yml).

1. The tutorials live at the repository root (``tutorials/NN_topic.ipynb``, stored without
   outputs), not under ``docs/``: every notebook found there is added to the site as
   ``tutorials/NN_topic.html`` (mkdocs-jupyter renders it, without running it) and to the
   navigation under "Tutorials", in file-name order. ``docs/tutorials/index.md`` gets the
   list of them in place of its ``<!-- tutorial list -->`` marker.
2. minidl's docstrings are written for Sphinx as much as for Markdown: roles
   (``:class:`~minidl.train.Trainer```) become plain code (``Trainer``), and a paragraph
   that introduces a literal block ends in one colon, not reST's ``::`` (and a ``::``
   alone on its line disappears); a reST "simple table" (columns framed by ``=====``
   lines) becomes an HTML table instead of one run-together paragraph.
"""
import json
import os
import re

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(ROOT, "tutorials")
LIST_MARKER = "<!-- tutorial list -->"
LITERAL_BLOCK = re.compile(r"::</p>")
LONE_LITERAL_MARK = re.compile(r"<p>::</p>\s*")
SIMPLE_TABLE = re.compile(r"<p>(=+(?: +=+)+\n.*?\n=+(?: +=+)+)</p>", re.S)
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|py:\w+):<code>(~?)([^<]*)</code>")


def _notebooks():
    if not os.path.isdir(TUTORIALS):
        return []
    return sorted(name for name in os.listdir(TUTORIALS)
                  if re.fullmatch(r"\d\d_\w+\.ipynb", name))


def _title(name):
    """The notebook's first Markdown heading, else its file name."""
    with open(os.path.join(TUTORIALS, name), encoding="utf-8") as handle:
        notebook = json.load(handle)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", [])).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip().replace("`", "")
    return name[:-len(".ipynb")].replace("_", " ")


def on_config(config):
    """Put each notebook into the navigation, after the tutorials' index page."""
    pages = [{_title(name): f"tutorials/{name}"} for name in _notebooks()]
    for index, entry in enumerate(config["nav"] or []):
        if isinstance(entry, dict) and entry.get("Tutorials") == "tutorials/index.md":
            config["nav"][index] = {"Tutorials": [{"All tutorials": "tutorials/index.md"}, *pages]}
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb into pages
def on_files(files, config):
    for name in _notebooks():
        files.append(File(f"tutorials/{name}", ROOT, config["site_dir"],
                          config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    if LIST_MARKER not in markdown:
        return markdown
    names = _notebooks()
    if not names:
        listing = ("*The notebooks are not in this copy of the repository yet: they appear "
                   "here once `tutorials/NN_topic.ipynb` files exist.*")
    else:
        listing = "\n".join(f"- [{_title(name)}]({name})" for name in names)
    return markdown.replace(LIST_MARKER, listing)


def on_page_content(html, page, config, files):
    """``:class:`~a.b.C``` -> ``C``; ``:func:`a.b``` -> ``a.b`` (as code); ``::`` -> ``:``."""
    if not page.file.src_uri.startswith("api/"):
        return html

    def plain(match):
        short, target = match.groups()
        return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"
    html = LONE_LITERAL_MARK.sub("", ROLE.sub(plain, html))
    html = SIMPLE_TABLE.sub(lambda match: _simple_table(match.group(1)), html)
    return LITERAL_BLOCK.sub(":</p>", html)


def _simple_table(text):
    """A reST simple table (``===`` borders, the first row between the first two of them
    a header) as an HTML table; the columns start where the border's ``=`` runs start."""
    lines = text.split("\n")
    starts = [match.start() for match in re.finditer(r"=+", lines[0])]
    borders = [index for index, line in enumerate(lines) if _is_border(line)]

    def row(line, tag):
        cells = [line[start:end].strip() for start, end in zip(starts, starts[1:] + [None])]
        return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"

    has_header = len(borders) > 2
    header = lines[borders[0] + 1:borders[1]] if has_header else []
    body = lines[borders[1 if has_header else 0] + 1:]
    head = "".join(row(line, "th") for line in header)
    rows = "".join(row(line, "td") for line in body if line.strip() and not _is_border(line))
    return f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _is_border(line):
    return re.fullmatch(r"=+(?: +=+)+", line) is not None
