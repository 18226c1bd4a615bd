from anyskill_tui.cli import main

main()
