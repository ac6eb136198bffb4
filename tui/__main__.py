from tui.cli import main

if __name__ == "__main__":  # the engine's process is spawned and imports this module again
    raise SystemExit(main())
