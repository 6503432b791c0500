# Sphinx configuration of the kit's docs site; nbs/_site/build.py writes the sources this reads. Offline by design:
# stored notebook outputs only (nothing executes), MathJax served from the site itself, no web fonts or CDNs.
import os

project = 'stereomae'
author = 'stereomae developers'
copyright = '2026 onwards, stereomae developers'
extensions = ['myst_nb']
root_doc = 'index'
exclude_patterns = ['_build', '**.ipynb_checkpoints']

nb_execution_mode = 'off'               # the notebooks' stored outputs are the figures
nb_render_markdown_format = 'myst'      # markdown outputs (API entries) parse like markdown cells
nb_merge_streams = True
myst_enable_extensions = ['colon_fence']   # maths arrives as MathML from build.py
myst_heading_anchors = 3
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure', 'myst.xref_missing']

html_theme = 'furo'
html_title = 'stereomae'
html_static_path = [os.environ['STEREOMAE_SITE_STATIC']]
html_favicon = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'favicon.svg')
html_theme_options = {'navigation_with_keys': True}
html_css_files = ['maths.css']
