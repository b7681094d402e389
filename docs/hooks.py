"""MkDocs hooks for the minidl site (see ``hooks:`` in mkdocs.yml).

1. The tutorials live at the repository root (``tutorials/NN_topic.ipynb``, stored without
   outputs), not under ``docs/``: every notebook found there is added to the site as
   ``tutorials/NN_topic.html`` (mkdocs-jupyter renders it, without running it) and to the
   navigation under "Tutorials", in file-name order. ``docs/tutorials/index.md`` gets the
   list of them in place of its ``<!-- tutorial list -->`` marker.
2. minidl's docstrings are written for Sphinx as much as for Markdown: roles
   (``:class:`~minidl.train.Trainer```) become plain code (``Trainer``), and a paragraph
   that introduces a literal block ends in one colon, not reST's ``::`` (and a ``::``
   alone on its line disappears).
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
    return LITERAL_BLOCK.sub(":</p>", html)
