"""Analytics: marts over orders, fulfillment, inventory and money, and the daily business report."""
