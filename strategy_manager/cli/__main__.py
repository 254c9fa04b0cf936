from strategy_manager.cli import main

main()
