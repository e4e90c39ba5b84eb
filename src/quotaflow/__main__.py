from quotaflow.cli.main import main

main()
