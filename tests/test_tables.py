"""HTML tables for the book: every value shown, formatted, escaped, missing values marked."""

from html.parser import HTMLParser

from bgnet_lite.tables import table_html


class Cells(HTMLParser):
    """Collects the text of every th/td cell, row by row."""

    def __init__(self):
        super().__init__()
        self.rows, self.inside = [], False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        self.inside = tag in ("td", "th")
        if self.inside:
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.rows[-1][-1] += data


def test_rows_headers_formats_and_escaping():
    rows = [{"method": "U-Net <6 ch>", "mb": 7.861, "paper": None},
            {"method": "BGNet", "mb": 47.6689, "paper": 47.7}]
    text = table_html(rows, {"method": "method", "mb": "Params MB", "paper": "paper's MB"},
                      formats={"mb": ".2f", "paper": ".2f"}, caption="sizes")
    parser = Cells()
    parser.feed(text)
    assert parser.rows == [["method", "Params MB", "paper's MB"],
                           ["U-Net <6 ch>", "7.86", "—"],
                           ["BGNet", "47.67", "47.70"]]
    assert "<6 ch>" not in text and "sizes" in text
