"""`netkiln <command> --help` shows the first line of each key's comment: that line must read as a whole."""
import pytest

from netkiln.commands.help import key_descriptions

# A line cut mid-sentence ends on one of these (the rest of the sentence went to the next comment line).
_DANGLING = {"a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "with", "by", "as", "from", "at", "than"}


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export", "summary", "analyze"])
def test_no_help_line_stops_mid_sentence(command):
    cut = {key: text for key, (_, text) in key_descriptions(command).items()
           if text.rstrip().endswith((",", ";", ":")) or text.split()[-1].lower() in _DANGLING}
    assert not cut, cut
