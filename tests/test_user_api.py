"""What users expect: netkiln.load() in Python, `--help` per command, the shipped recipes, the summary's labels."""
from netkiln.cli import main


# ------------------------------------------------------------------------------------------------ summary
def test_summary_says_a_recurrent_layer_is_bidirectional(capsys):
    assert main(["summary", "model=birnn", "data=mnist1d"]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU, bidirectional)" in out
    assert main(["summary", "model=gru", "data=mnist1d"]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU)" in out and "bidirectional" not in out
