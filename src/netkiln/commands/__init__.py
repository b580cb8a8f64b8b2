"""One module per CLI command; each exposes `run(command, argv) -> exit code`."""

# command -> (module with `run(argv) -> int`, one-line help)
COMMANDS = {
    "train": ("netkiln.commands.train", "train a model: netkiln train model=gru optimizer.lr=3e-3 (-m for sweeps)"),
    "summary": ("netkiln.commands.summary", "print the compiled model's layer table, without training"),
    "analyze": ("netkiln.commands.analyze", "describe the data: tables, analysis.json and a PNG; nothing trained"),
    "evaluate": ("netkiln.commands.evaluate", "metrics and plots of a trained run: netkiln evaluate run=DIR"),
    "predict": ("netkiln.commands.predict", "predict new rows: netkiln predict run=DIR input=new.csv output=pred.csv"),
    "export": ("netkiln.commands.export", "write a run's model as ONNX or TorchScript: netkiln export run=DIR"),
    "leaderboard": ("netkiln.commands.leaderboard", "rebuild and print a sweep's leaderboard: netkiln leaderboard DIR"),
}
