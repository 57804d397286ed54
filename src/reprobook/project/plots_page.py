"""The HTML page ``dvc plots show`` fills in, with Vega, Vega-Lite and Vega-Embed inlined: it works offline.

DVC's own page loads the three JavaScript libraries from a CDN, so without a
network its interactive charts are blank. A project names this page in
``.dvc/config`` (``plots.html_template``); DVC then fills its ``{plot_divs}``
placeholder and, since the page has no ``{scripts}`` placeholder, leaves out
the CDN ``<script>`` tags. The libraries come from the ``vl-convert-python``
package (BSD-3-Clause) as one self-contained bundle of about 0.9 MB: Vega,
Vega-Lite and Vega-Embed (BSD-3-Clause) and what they use (d3 and others,
ISC/MIT). The same package version gives the same bytes.
"""

from __future__ import annotations

PAGE = ".dvc/plots/offline.html"
"""Where a project keeps the page (committed with the project)."""
SETTING = "plots/offline.html"
"""The page as ``plots.html_template`` names it: DVC reads a relative path from the ``.dvc`` folder."""
VEGA_LITE = "5.21"
"""DVC's plot templates are Vega-Lite v5 specifications."""

_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

_HTML = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Written by reprobook: Vega {vega}, Vega-Lite {vega_lite} and Vega-Embed {embed}, bundled by
         vl-convert-python {package}, inlined so that `dvc plots show` needs no network. -->
    <script type="text/javascript">
(function () {
__BUNDLE__
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page() -> str:
    """The page's text: DVC's default page with the libraries inlined instead of loaded from a CDN."""
    from importlib.metadata import version

    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    clashes = [text for text in (*_PLACEHOLDERS, "</script") if text in bundle]
    if clashes:  # DVC substitutes placeholders by plain replacement; a browser ends the script at </script
        raise RuntimeError(f"vl-convert's JavaScript bundle contains {', '.join(clashes)}: it cannot be inlined")
    header = (
        _HTML.replace("{vega}", vl_convert.get_vega_version())
        .replace("{vega_lite}", VEGA_LITE)
        .replace("{embed}", vl_convert.get_vega_embed_version())
        .replace("{package}", version("vl-convert-python"))
    )
    return header.replace("__BUNDLE__", bundle.strip())

