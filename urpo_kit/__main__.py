from urpo_kit.cli import app

app(prog_name="urpo-kit")
