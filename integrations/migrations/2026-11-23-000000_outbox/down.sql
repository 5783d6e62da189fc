DROP TABLE deliveries; DROP TABLE parcels;
